"""SQLAlchemy Core statements run on the asyncpg connection itself.

The read model builds its statements with SQLAlchemy Core (filters, keyset pagination, search)
but sends them with asyncpg: measured on the reference machine, ``AsyncConnection.execute``
costs ~75 µs of Python per statement over asyncpg's own ~22 µs round trip, and a pooled
connection's implicit transaction another ~150 µs per answer (bench/README.md, "Queries").

:class:`CoreStatements` compiles each statement *shape* once, with SQLAlchemy's own cache key
(the one ``Connection.execute`` uses): a statement of a known shape costs its cache key and its
parameters, not a compilation. asyncpg then prepares the SQL text once per connection (its
statement cache) and decodes rows natively, so a row is an ``asyncpg.Record`` (mapping access).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.util import LRUCache


class CoreStatements:
    """Render Core statements to asyncpg's SQL and positional arguments; run them."""

    def __init__(self, shapes: int = 500) -> None:
        self._dialect = PGDialect_asyncpg()
        #: Compiled statements by shape; a few dozen in practice (filters present × sort × staff).
        self._compiled: LRUCache[Any, Any] = LRUCache(shapes)

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

    async def fetch(self, conn: asyncpg.Connection, statement: ClauseElement) -> list[asyncpg.Record]:
        sql, args = self.render(statement)
        return await conn.fetch(sql, *args)  # type: ignore[no-any-return]

    async def scalar(self, conn: asyncpg.Connection, statement: ClauseElement) -> Any:
        sql, args = self.render(statement)
        return await conn.fetchval(sql, *args)


#: One cache for the process: shapes do not depend on the connection.
STATEMENTS = CoreStatements()
