"""SQLAlchemy Core statements run on the asyncpg connection itself.

The read model builds its statements with SQLAlchemy Core (filters, keyset pagination, search)
but sends them with asyncpg: measured on the reference machine, ``AsyncConnection.execute``
costs ~75 µs of Python per statement over asyncpg's own ~22 µs round trip, and a pooled
connection's implicit transaction another ~150 µs per answer (bench/README.md, "Queries").

:class:`CoreStatements` compiles each statement *shape* once, with SQLAlchemy's own cache key
(the one ``Connection.execute`` uses): a statement of a known shape costs its cache key and its
parameters, not a compilation. asyncpg then prepares the SQL text once per connection (its
statement cache) and decodes rows natively, so a row is an ``asyncpg.Record`` (mapping access).

The hot statements of the read model go one step further (:meth:`CoreStatements.prepared`): they
are *built* once per shape too. The caller names the shape (which filters are present, the sort,
staff or not) and gives the parameters' values by name; the Core statement is built and compiled on
the first call of that shape only, and later calls cost a dictionary of values. Building a page's
Core statement, its count's and their cache keys was half the Python time of an answer
(bench/README.md, "Queries").
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.util import LRUCache


@dataclass(frozen=True, slots=True)
class Shaped:
    """A statement of a shape the caller names: its key, how to build it (on the shape's first call
    only), and this call's values by parameter name."""

    key: Hashable
    build: Callable[[], ClauseElement]
    values: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement shape, compiled: its SQL, and where each positional argument comes from."""

    sql: str
    #: Per ``$n``: the name of a caller's value, or None and the shape's constant; its bind processor.
    slots: tuple[tuple[str | None, Any, Callable[[Any], Any] | None], ...]

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        args = []
        for name, constant, process in self.slots:
            value = constant if name is None else values[name]
            args.append(value if process is None else process(value))
        return args


class CoreStatements:
    """Render Core statements to asyncpg's SQL and positional arguments; run them."""

    def __init__(self, shapes: int = 500) -> None:
        self._dialect = PGDialect_asyncpg()
        #: Compiled statements by shape; a few dozen in practice (filters present × sort × staff).
        self._compiled: LRUCache[Any, Any] = LRUCache(shapes)
        #: Prepared shapes by the caller's key (:meth:`prepared`).
        self._prepared: LRUCache[Hashable, Prepared] = LRUCache(shapes)

    def render(self, statement: ClauseElement) -> tuple[str, list[Any]]:
        """The SQL text (``$n`` parameters) and its arguments, in order."""
        # SQLAlchemy's cache entry point (private API, pinned by requirements.lock; every read
        # model test runs through it): the compiled form of this shape, and this statement's values.
        compiled, extracted, _, _ = statement._compile_w_cache(  # type: ignore[attr-defined]
            self._dialect, compiled_cache=self._compiled, column_keys=[])
        assert isinstance(compiled, SQLCompiler)
        params = compiled.construct_params(extracted_parameters=extracted)
        processors: Mapping[str, Any] = compiled._bind_processors
        return compiled.string, [processors[name](params[name]) if name in processors else params[name]
                                 for name in compiled.positiontup or ()]

    def prepared(self, shaped: Shaped) -> Prepared:
        """The shape ``shaped.key``: on its first call, ``shaped.build()`` (a statement whose every
        varying value is a *named* bind parameter, carrying this call's value) is compiled; later
        calls with that key reuse it with their own values. Anonymous parameters (``literal(1)``) are
        constants of the shape. The names of the built statement must be exactly those of the
        values: a value the shape would miss, or ignore, fails at once."""
        found = self._prepared.get(shaped.key)
        if found is None:
            compiled = shaped.build().compile(dialect=self._dialect)
            assert isinstance(compiled, SQLCompiler)
            built = compiled.construct_params()
            names = compiled.positiontup or []
            named = {name for name in names if not compiled.binds[name].unique}
            if named != set(shaped.values):
                raise ValueError(f"shape {shaped.key!r}: parameters {sorted(named)} != values {sorted(shaped.values)}")
            processors: Mapping[str, Any] = compiled._bind_processors
            found = self._prepared[shaped.key] = Prepared(compiled.string, tuple(
                (name if name in named else None, None if name in named else built[name], processors.get(name))
                for name in names))
        return found

    async def fetch(self, conn: asyncpg.Connection, statement: ClauseElement) -> list[asyncpg.Record]:
        sql, args = self.render(statement)
        return await conn.fetch(sql, *args)  # type: ignore[no-any-return]

    async def scalar(self, conn: asyncpg.Connection, statement: ClauseElement) -> Any:
        sql, args = self.render(statement)
        return await conn.fetchval(sql, *args)

    async def fetch_shaped(self, conn: asyncpg.Connection, shaped: Shaped) -> list[asyncpg.Record]:
        prepared = self.prepared(shaped)
        return await conn.fetch(prepared.sql, *prepared.arguments(shaped.values))  # type: ignore[no-any-return]

    async def scalar_shaped(self, conn: asyncpg.Connection, shaped: Shaped) -> Any:
        prepared = self.prepared(shaped)
        return await conn.fetchval(prepared.sql, *prepared.arguments(shaped.values))


#: One cache for the process: shapes do not depend on the connection.
STATEMENTS = CoreStatements()
