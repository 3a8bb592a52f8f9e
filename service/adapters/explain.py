"""EXPLAIN for SQLAlchemy Core selects: the planner's row estimate, and whole plans for tests
and benchmarks. Nothing is executed: EXPLAIN without ANALYZE only plans."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.sql.visitors import InternalTraversal


class Explain(Executable, ClauseElement):
    """``EXPLAIN (FORMAT JSON) <statement>``; cached like the statement it explains."""

    inherit_cache = True
    _traverse_internals = [("statement", InternalTraversal.dp_clauseelement),
                           ("analyze", InternalTraversal.dp_boolean)]

    def __init__(self, statement: Any, *, analyze: bool = False) -> None:
        self.statement = statement
        self.analyze = analyze

    @property
    def _all_selected_columns(self) -> tuple[()]:  # the plan is one unnamed JSON column
        return ()


@compiles(Explain, "postgresql")
def _compile_explain(element: Explain, compiler: Any, **kw: Any) -> str:
    options = "ANALYZE, BUFFERS, FORMAT JSON" if element.analyze else "FORMAT JSON"
    return f"EXPLAIN ({options}) " + compiler.process(element.statement, **kw)


async def plan(conn: AsyncConnection, statement: Any, *, analyze: bool = False) -> dict[str, Any]:
    """The top plan node (``analyze`` runs the statement too)."""
    return top_node((await conn.execute(Explain(statement, analyze=analyze))).scalar_one())


def top_node(explained: Any) -> dict[str, Any]:
    """The top plan node of an EXPLAIN (FORMAT JSON) result, decoded or not (asyncpg decodes json
    on connections SQLAlchemy set up)."""
    doc = orjson.loads(explained) if isinstance(explained, str) else explained
    return doc[0]["Plan"]  # type: ignore[no-any-return]


def limited_input(node: dict[str, Any]) -> dict[str, Any] | None:
    """The node under the first Limit: its ``Plan Rows`` is the estimate before the limit."""
    if node["Node Type"] == "Limit":
        return node["Plans"][0]  # type: ignore[no-any-return]
    for child in node.get("Plans", ()):
        if (found := limited_input(child)) is not None:
            return found
    return None


def index_names(node: dict[str, Any]) -> set[str]:
    """Every index a plan uses."""
    found = {node["Index Name"]} if "Index Name" in node else set()
    for child in node.get("Plans", ()):
        found |= index_names(child)
    return found
