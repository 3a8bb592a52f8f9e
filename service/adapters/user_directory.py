"""The local replica of the user directory, fed by ``users.events.v1``.

Upserts are idempotent and ordered: a row only changes when the event is at least as new as
what is stored (``occurred_at``), so a redelivered older event never undoes a newer one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy import update

from . import tables as t


async def apply_user_changes(engine: AsyncEngine, upserts: list[dict[str, Any]],
                             deactivations: list[tuple[Any, datetime]]) -> None:
    """Apply one batch in one transaction; ``upserts`` rows carry every users column."""
    async with engine.begin() as conn:
        for row in _latest(upserts):
            stmt = insert(t.users).values(row)
            stmt = stmt.on_conflict_do_update(
                index_elements=[t.users.c.user_id],
                set_={c: stmt.excluded[c] for c in row if c != "user_id"},
                where=t.users.c.updated_at <= stmt.excluded.updated_at,
            )
            await conn.execute(stmt)
        for user_id, occurred_at in deactivations:
            await conn.execute(
                update(t.users)
                .where(t.users.c.user_id == user_id, t.users.c.updated_at <= occurred_at)
                .values(active=False, updated_at=occurred_at)
            )


def _latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    latest: dict[Any, dict[str, Any]] = {}
    for row in rows:
        seen = latest.get(row["user_id"])
        if seen is None or seen["updated_at"] <= row["updated_at"]:
            latest[row["user_id"]] = row
    return list(latest.values())
