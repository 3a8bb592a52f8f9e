"""Shared by the integration tests of the unit of work and the relay: fresh databases, commands
as they come off the topic, and a unit of work that can be held just before COMMIT."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from ticket_contracts import Actor, CommandBase
from ticket_contracts.topics import HEADER_REPLY_TO

from service.adapters import tables as t
from service.adapters.auth import ActorResolver
from service.adapters.relay import UNPUBLISHED_COUNTS_SQL
from service.adapters.unit_of_work import SqlUnitOfWork
from service.adapters.user_directory import apply_user_changes
from service.entrypoints.decoding import BAD_REPLY_TO, decode_command
from service.handlers.messages import Incoming
from service.migrate import upgrade
from tests.support.infra import create_database, drop_database

_RESOLVER = ActorResolver("trust")


@contextlib.asynccontextmanager
async def migrated_engine(server_url: str, **engine_options: Any) -> AsyncIterator[AsyncEngine]:
    """A fresh database migrated to head, dropped afterwards: tests never see each other's rows."""
    url = await create_database(server_url)
    await asyncio.to_thread(upgrade, url)  # Alembic runs its own event loop
    engine = create_async_engine(url, **engine_options)
    try:
        yield engine
    finally:
        await engine.dispose()
        await drop_database(server_url, url)


# ---- actors and commands ------------------------------------------------------------------
def customer(customer_id: uuid.UUID | None = None) -> Actor:
    return Actor(user_id=uuid.uuid4(), role="customer", customer_id=customer_id or uuid.uuid4())


def staff(role: str = "agent", user_id: uuid.UUID | None = None) -> Actor:
    return Actor(user_id=user_id or uuid.uuid4(), role=role)


def incoming(command: CommandBase, *, reply_to: str | None = None) -> Incoming:
    """The command as the subscriber decodes it from a Kafka record."""
    headers = [(HEADER_REPLY_TO, reply_to.encode())] if reply_to else []
    record = SimpleNamespace(value=command.model_dump_json().encode(), headers=headers, key=None,
                             topic="tickets.commands.v1", partition=0, offset=0)
    decoded = decode_command(record, _RESOLVER, 1_048_576)
    assert isinstance(decoded, Incoming), decoded
    if decoded.invalid == BAD_REPLY_TO:  # tests of the relay's own defence use names the decoder refuses
        decoded.invalid, decoded.invalid_reason, decoded.command = None, "validation_error", command
        decoded.reply_to = reply_to
    assert decoded.invalid is None, decoded
    return decoded


async def add_user(engine: AsyncEngine, role: str, *, email: str | None = None,
                   customer_id: uuid.UUID | None = None, active: bool = True) -> uuid.UUID:
    user_id = uuid.uuid4()
    await apply_user_changes(engine, [{
        "user_id": user_id, "email": email or f"{user_id.hex[:10]}@example.test", "display_name": "",
        "role": role, "customer_id": customer_id, "active": active, "updated_at": datetime.now(UTC),
    }], [])
    return user_id


# ---- reading the database back --------------------------------------------------------------
async def count(engine: AsyncEngine, table: Any, *where: Any) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()


async def unpublished(engine: AsyncEngine) -> tuple[int, int]:
    """Events and results not yet published, by the progress the relay stored."""
    async with engine.connect() as conn:
        row = (await conn.execute(text(UNPUBLISHED_COUNTS_SQL))).one()
    return row.events, row.results


async def counts(engine: AsyncEngine) -> dict[str, int]:
    tables = (t.tickets, t.replies, t.time_entries, t.ticket_events, t.processed_commands, t.email_messages)
    return {table.name: await count(engine, table) for table in tables}


async def versions(engine: AsyncEngine, ticket_id: uuid.UUID) -> list[int]:
    """The ticket's history versions in the order the relay publishes them (``seq``)."""
    e = t.ticket_events
    async with engine.connect() as conn:
        rows = await conn.execute(select(e.c.ticket_version).where(e.c.ticket_id == ticket_id).order_by(e.c.seq))
        return list(rows.scalars())


async def lock_waiters(engine: AsyncEngine) -> int:
    """Sessions of this database blocked on a lock (a row lock, or another's uncommitted key)."""
    async with engine.connect() as conn:
        return (await conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ))).scalar_one()


# ---- a unit of work held between its last INSERT and its COMMIT -----------------------------
class InjectedFailure(Exception):
    pass


class HeldUnitOfWork(SqlUnitOfWork):
    """Writes every row, then waits at COMMIT until ``release()``; ``release(fail=True)`` makes
    the COMMIT fail instead, so the transaction rolls back."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.at_commit = asyncio.Event()
        self._released = asyncio.Event()
        self._fail = False

    def release(self, *, fail: bool = False) -> None:
        self._fail = fail
        self._released.set()

    async def __aenter__(self) -> HeldUnitOfWork:
        await super().__aenter__()
        self._tx = _HeldTransaction(self._tx, self)  # type: ignore[assignment]
        return self


class _HeldTransaction:
    def __init__(self, tx: Any, uow: HeldUnitOfWork) -> None:
        self._tx, self._uow = tx, uow

    @property
    def is_active(self) -> bool:
        return self._tx.is_active

    async def rollback(self) -> None:
        await self._tx.rollback()

    async def commit(self) -> None:
        self._uow.at_commit.set()
        await self._uow._released.wait()
        if self._uow._fail:
            raise InjectedFailure("commit refused by the test")
        await self._tx.commit()
