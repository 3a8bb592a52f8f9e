"""The erasure of a person (``user.erased``): its plan, its progress, and the replica's part.

:func:`plan_erasure` runs once per user in one transaction: it records the erasure, lists every
ticket to redact — whole: created by the user (or, with ``whole_customer`` and a customer user,
every ticket of their customer); author-only: other tickets with the user's replies, time-entry
notes or history entries — each with the id of its ``ticket.redact`` command, and removes the
user's address and name from the replica. Called again (a redelivered or a second
``user.erased``) it plans nothing and returns what is still unsent, so sending resumes where a
crash left it and a finished erasure is a no-op.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_LOCK = text("SELECT tickets_whole, tickets_authored, commands_sent, done_at FROM erasures "
             "WHERE user_id = :u FOR UPDATE")
_USER = text("SELECT role, customer_id FROM users WHERE user_id = :u")
_PLAN = text("""
WITH whole AS (
  SELECT id FROM tickets WHERE created_by = :u
  UNION
  SELECT id FROM tickets WHERE CAST(:customer AS uuid) IS NOT NULL AND customer_id = :customer
), authored AS (
  SELECT ticket_id FROM replies WHERE author_id = :u
  UNION SELECT ticket_id FROM time_entries WHERE user_id = :u
  UNION SELECT ticket_id FROM ticket_events
        WHERE type IN ('ticket.updated', 'ticket.status_changed', 'ticket.deleted')
          AND strpos(body, CAST(:u AS text)) > 0
  EXCEPT SELECT id FROM whole
)
INSERT INTO erasure_commands (user_id, ticket_id, author_only, command_id)
SELECT :u, id, false, gen_random_uuid() FROM whole
UNION ALL SELECT :u, ticket_id, true, gen_random_uuid() FROM authored
""")
_RECORD = text("""
INSERT INTO erasures (user_id, message_id, requested_at, tickets_whole, tickets_authored)
VALUES (:u, :m, :at, 0, 0)""")
_COUNT = text("""
UPDATE erasures SET tickets_whole = c.whole, tickets_authored = c.authored, done_at = CASE WHEN c.total = 0 THEN now() END
FROM (SELECT count(*) FILTER (WHERE NOT author_only) AS whole, count(*) FILTER (WHERE author_only) AS authored,
             count(*) AS total FROM erasure_commands WHERE user_id = :u) c
WHERE user_id = :u RETURNING tickets_whole, tickets_authored""")
_ADDRESS = text("SELECT email FROM users WHERE user_id = :u")
_FORGET = text("UPDATE users SET email = '', display_name = '', active = false WHERE user_id = :u")
#: Mail ingest may keep the sender's address of inbound mails (rate limits): cleared where present.
_SENDER_COLUMN = text("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                      "AND table_name = 'email_messages' AND column_name = 'from_address')")
_FORGET_SENDER = text("UPDATE email_messages SET from_address = NULL WHERE from_address = lower(:email)")
_UNSENT = text("SELECT ticket_id, author_only, command_id FROM erasure_commands "
               "WHERE user_id = :u AND sent_at IS NULL ORDER BY ticket_id")
_SENT = text("""
WITH marked AS (
  UPDATE erasure_commands SET sent_at = now() WHERE user_id = :u AND ticket_id = ANY(:ids) AND sent_at IS NULL
  RETURNING 1)
UPDATE erasures SET commands_sent = commands_sent + (SELECT count(*) FROM marked),
                    done_at = CASE WHEN :last THEN now() ELSE done_at END
WHERE user_id = :u RETURNING commands_sent""")


@dataclass(frozen=True, slots=True)
class PendingRedaction:
    ticket_id: uuid.UUID
    author_only: bool
    command_id: uuid.UUID


@dataclass(slots=True)
class ErasurePlan:
    user_id: uuid.UUID
    tickets_whole: int
    tickets_authored: int
    commands_sent: int
    new: bool  # planned by this call
    unsent: list[PendingRedaction] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.unsent


async def plan_erasure(engine: AsyncEngine, user_id: uuid.UUID, message_id: uuid.UUID, occurred_at: datetime,
                       *, whole_customer: bool) -> ErasurePlan:
    async with engine.begin() as conn:
        params = {"u": user_id}
        row = (await conn.execute(_LOCK, params)).first()
        new = row is None
        if row is None:
            user = (await conn.execute(_USER, params)).first()
            customer = user.customer_id if whole_customer and user is not None and user.role == "customer" else None
            await conn.execute(_RECORD, {**params, "m": message_id, "at": occurred_at})
            await conn.execute(_PLAN, {**params, "customer": customer})
            whole, authored = (await conn.execute(_COUNT, params)).one()
            sent = 0
        else:
            whole, authored, sent = row.tickets_whole, row.tickets_authored, row.commands_sent
        # also after a redelivery: an upsert may have come between
        address = await conn.scalar(_ADDRESS, params)
        await conn.execute(_FORGET, params)
        if address and await conn.scalar(_SENDER_COLUMN):
            await conn.execute(_FORGET_SENDER, {"email": address})
        unsent = [PendingRedaction(*r) for r in await conn.execute(_UNSENT, params)]
    return ErasurePlan(user_id, whole, authored, sent, new, unsent)


async def mark_sent(engine: AsyncEngine, user_id: uuid.UUID, ticket_ids: list[uuid.UUID], *, last: bool) -> int:
    """Record that these commands are on the topic; returns how many of the erasure's are."""
    async with engine.begin() as conn:
        return int((await conn.execute(_SENT, {"u": user_id, "ids": ticket_ids, "last": last})).scalar_one())


async def erased_among(engine: AsyncEngine, user_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these users were erased (their upserts no longer reach the replica)."""
    if not user_ids:
        return set()
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT user_id FROM erasures WHERE user_id = ANY(:ids)"), {"ids": user_ids})
        return {r.user_id for r in rows}
