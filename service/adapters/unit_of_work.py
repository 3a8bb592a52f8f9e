"""The unit of work of one command batch: one PostgreSQL transaction, multi-row statements.

Reads happen up front (lock the batch's tickets, look up the inbox, users, ticket numbers);
the handlers then work on the in-memory aggregates; ``commit`` writes every change, every
event (history = outbox), every inbox row with its result in a few statements and notifies
the relay. Nothing is visible to anyone until the single COMMIT.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import any_, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from service.domain.ticket import Ticket
from service.domain.values import DirectoryUser

from . import tables as t
from .batch_changes import BatchChanges
from .redaction import carry_out
from .rows import TICKET_COLUMNS, reply_to_row, ticket_from_row, ticket_to_row, time_entry_to_row, user_from_row

NOTIFY_CHANNEL = "tickets_outbox"
_ids = bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
_texts = bindparam("texts", type_=ARRAY(t.Text()))


@dataclass(slots=True, frozen=True)
class StoredResult:
    result: str
    reply_to: str | None


class SqlUnitOfWork(BatchChanges):
    """Opened with ``async with``; rolls back unless :meth:`commit` ran."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__()
        self._engine = engine
        self.conn: AsyncConnection
        self._tx: AsyncTransaction | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        self.conn = await self._engine.connect()
        self._tx = await self.conn.begin()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
        finally:
            await self.conn.close()

    # ---- reads ----------------------------------------------------------------------------
    async def lock_tickets(self, ids: Iterable[uuid.UUID]) -> None:
        """Load and lock (FOR UPDATE, in id order) the tickets the batch addresses."""
        wanted = sorted({i for i in ids if i not in self._tickets and i not in self._absent})
        if not wanted:
            return
        stmt = (
            select(t.tickets).where(t.tickets.c.id == any_(_ids)).order_by(t.tickets.c.id).with_for_update()
        )
        for row in await self.conn.execute(stmt, {"ids": wanted}):
            ticket = ticket_from_row(row)
            self._tickets[ticket.id] = ticket
        self._absent.update(i for i in wanted if i not in self._tickets)

    async def load(self, ticket_id: uuid.UUID) -> Ticket | None:
        await self.lock_tickets([ticket_id])
        return self._tickets.get(ticket_id)

    async def processed(self, message_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, StoredResult]:
        """Results of commands already handled (the inbox)."""
        pc = t.processed_commands
        stmt = select(pc.c.message_id, pc.c.result, pc.c.reply_to).where(pc.c.message_id == any_(_ids))
        rows = await self.conn.execute(stmt, {"ids": list(message_ids)})
        return {r.message_id: StoredResult(r.result, r.reply_to) for r in rows}

    async def users(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, DirectoryUser]:
        wanted = list(set(ids))
        if not wanted:
            return {}
        rows = await self.conn.execute(select(t.users).where(t.users.c.user_id == any_(_ids)), {"ids": wanted})
        return {u.user_id: u for u in map(user_from_row, rows)}

    async def user_by_email(self, email: str) -> DirectoryUser | None:
        stmt = select(t.users).where(t.users.c.email == email.lower()).order_by(t.users.c.active.desc()).limit(1)
        row = (await self.conn.execute(stmt)).first()
        return user_from_row(row) if row else None

    async def email_known(self, message_ids: Iterable[str]) -> dict[str, tuple[uuid.UUID | None, uuid.UUID]]:
        """Known email Message-IDs → (ticket id, command id that recorded them)."""
        ids = list(message_ids)
        pending = {i: (r["ticket_id"], r["command_id"]) for i in ids if (r := self._emails.get(i))}
        em = t.email_messages
        stmt = select(em.c.message_id, em.c.ticket_id, em.c.command_id).where(em.c.message_id == any_(_texts))
        rows = await self.conn.execute(stmt, {"texts": ids})
        return {r.message_id: (r.ticket_id, r.command_id) for r in rows} | pending

    async def result_of(self, command_id: uuid.UUID) -> StoredResult | None:
        return (await self.processed([command_id])).get(command_id)

    async def ticket_id_by_number(self, number: str) -> uuid.UUID | None:
        row = (await self.conn.execute(select(t.tickets.c.id).where(t.tickets.c.number == number))).first()
        return row.id if row else None

    async def reserve_numbers(self, count: int) -> None:
        """Draw ticket numbers for the batch's new tickets in one round trip (gaps are allowed)."""
        if count <= 0:
            return
        stmt = select(func.nextval("ticket_number_seq")).select_from(func.generate_series(1, count))
        self._numbers.extend((await self.conn.execute(stmt)).scalars())

    async def commit(self, touched: Iterable[Ticket]) -> None:
        """Write every change of the batch, then COMMIT."""
        tickets, replies, entries, updates, redactions = [], [], [], [], []
        for ticket in touched:
            redactions.extend(ticket.take_redactions())
            new_replies, new_entries = ticket.take_children()
            replies.extend(map(reply_to_row, new_replies))
            entries.extend(map(time_entry_to_row, new_entries))
            (tickets if ticket.id in self._new else updates).append(ticket_to_row(ticket))
        c = self.conn
        if tickets:
            await c.execute(insert(t.tickets), tickets)
        if updates:
            await c.execute(_UPDATE_TICKET, [{"b_" + k: v for k, v in row.items()} for row in updates])
        if replies:
            await c.execute(insert(t.replies), replies)
        if entries:
            await c.execute(insert(t.time_entries), entries)
        if self._events:
            await c.execute(insert(t.ticket_events), self._events)
        if self._inbox:
            await c.execute(insert(t.processed_commands), self._inbox)
        if self._emails:
            await c.execute(insert(t.email_messages), list(self._emails.values()))
        if redactions:  # last: scrubs what this batch wrote too
            await carry_out(c, redactions)
        if self._events or self._inbox:
            await c.execute(text("SELECT pg_notify(:channel, '')"), {"channel": NOTIFY_CHANNEL})
        assert self._tx is not None
        await self._tx.commit()


_UPDATE_TICKET = (
    update(t.tickets)
    .where(t.tickets.c.id == bindparam("b_id"))
    .values({c: bindparam("b_" + c) for c in (*TICKET_COLUMNS, "priority_rank") if c != "id"})
)
