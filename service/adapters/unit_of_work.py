"""The unit of work of one command batch: one PostgreSQL transaction, multi-row statements.

It implements :class:`service.handlers.unit_of_work.UnitOfWork`. Reads happen up front (lock the
batch's ticket ids, look up the inbox, users, ticket numbers); the handlers then work on the
in-memory aggregates; ``commit`` serialises the typed events and results and writes every change,
every event (history = outbox), every inbox row with its result in a few statements and notifies
the relay — or, when this process's relay leads, hands it those rows once committed
(:class:`OutboxHandoff`). Nothing is visible to anyone until the single COMMIT. A constraint the database
enforces surfaces as :class:`~service.handlers.unit_of_work.ConstraintViolation`.

The hot path — the locks and reads every batch makes and its ticket writes — runs straight on the
asyncpg connection under SQLAlchemy's transaction, with constant SQL text that asyncpg's
statement cache serves prepared: SQLAlchemy's per-execute machinery (cache keys, bound
parameter processing, result wrapping, greenlet switches) was most of a small batch's CPU. The
rarely used paths (mail, attachments, scans, redactions) stay on SQLAlchemy.

Locks: every ticket id of the batch, existing or not, is first locked with a transaction-scoped
advisory lock (in id order), and only then are the existing rows read ``FOR UPDATE``. So a
concurrent batch (a zombie consumer after a rebalance) that is creating a ticket the batch also
addresses has committed — or not started — by the time this batch reads the ticket and the inbox.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol, cast

import asyncpg
from sqlalchemy import Column, Table, any_, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from service.domain.attachments import Attachment
from service.domain.email import KnownEmail
from service.domain.ticket import Ticket
from service.domain.values import DirectoryUser
from service.handlers.unit_of_work import ConstraintViolation, StoredResult

from . import tables as t
from .batch_changes import BatchChanges
from .redaction import carry_out
from .rows import (
    attachment_from_row,
    attachment_to_row,
    reply_to_row,
    ticket_from_row,
    ticket_to_row,
    time_entry_to_row,
    user_from_row,
)
from .serialization import result_from_json

NOTIFY_CHANNEL = "tickets_outbox"


class OutboxHandoff(Protocol):
    """This process's outbox relay (:class:`.relay.OutboxRelay`) as a unit of work sees it: while it
    ``leading``, a committed batch's outbox rows are handed to it (``seq`` order, as the relay
    reads them) instead of a NOTIFY that makes it read them back."""

    @property
    def leading(self) -> bool: ...

    def hand_off(self, events: list[dict[str, Any]], results: list[dict[str, Any]]) -> bool:
        """False: no longer leading (the rows are not taken)."""
        ...
_ids = bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
_texts = bindparam("texts", type_=ARRAY(t.Text()))


def _columns(table: Table) -> str:
    return ", ".join(table.c.keys())


_PG = postgresql.dialect()


def _sql_type(column: Column[Any]) -> str:
    return str(column.type.compile(dialect=_PG))


def _array_param(number: int, column: Column[Any]) -> str:
    """The ``number``-th parameter as an array of ``column``'s type (one element per row)."""
    return f"${number}::{_sql_type(column)}[]"


# The hot path's statements, run on asyncpg directly (constant text: prepared once per connection).
_ADVISORY_LOCKS = "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k"
_LOCK_TICKETS = f"SELECT {_columns(t.tickets)} FROM tickets WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"
_INBOX = ("SELECT message_id, result, reply_to, fingerprint FROM processed_commands "
          "WHERE message_id = ANY($1::uuid[])")
_USERS = f"SELECT {_columns(t.users)} FROM users WHERE user_id = ANY($1::uuid[])"
_NUMBERS = f"SELECT nextval('{t.ticket_number_seq.name}') FROM generate_series(1, $1)"
#: A batch's first statement: its advisory locks ($1), its ticket numbers ($2) and its users ($3) —
#: one row per user found, or one row of NULL user columns; ``locked`` and ``numbers`` on every row.
#: The CTEs call volatile functions, so PostgreSQL evaluates each exactly once, whatever the join.
_LOCKS_NUMBERS_USERS = (
    "WITH locked AS (SELECT count(pg_advisory_xact_lock(k)) AS locked FROM unnest($1::bigint[]) AS k), "
    f"numbers AS (SELECT ARRAY(SELECT nextval('{t.ticket_number_seq.name}') FROM generate_series(1, $2)) AS numbers) "
    f"SELECT locked, numbers, {', '.join('u.' + c for c in t.users.c.keys())} FROM locked CROSS JOIN numbers "
    "LEFT JOIN users AS u ON u.user_id = ANY($3::uuid[])")


def _tickets_and_inbox() -> str:
    """The batch's second statement, once its advisory locks are held (a new snapshot): its ticket
    rows ``FOR UPDATE`` ($1) and its inbox rows ($2), as one result — ``kind`` 't' or 'i', the other
    kind's columns NULL."""
    inbox = ("message_id", "result", "reply_to", "fingerprint")
    pc = t.processed_commands.c
    no_ticket = ", ".join(f"NULL::{_sql_type(c)}" for c in t.tickets.c)
    no_inbox = ", ".join(f"NULL::{_sql_type(pc[c])} AS {c}" for c in inbox)
    return (f"WITH locked AS (SELECT {_columns(t.tickets)} FROM tickets WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE) "
            f"SELECT 't' AS kind, locked.*, {no_inbox} FROM locked UNION ALL "
            f"SELECT 'i', {no_ticket}, {', '.join(inbox)} FROM processed_commands WHERE message_id = ANY($2::uuid[])")


_TICKETS_AND_INBOX = _tickets_and_inbox()
#: Every column of ``tickets``, in the order of the array parameters ($1, $2, …) of both writes.
_TICKET_ROW = tuple(t.tickets.c.keys())
#: Array-typed columns go as one text literal per row (``{"a","b"}``), cast back to their array type:
#: ``unnest`` of a two-dimensional array would flatten it, and ticket arrays differ in length.
_ARRAY_COLUMNS = frozenset(c.name for c in t.tickets.c if isinstance(c.type, ARRAY))


def _unnest_tickets() -> tuple[str, str]:
    params, values = [], []
    for n, c in enumerate(t.tickets.c, 1):
        if c.name in _ARRAY_COLUMNS:
            params.append(f"${n}::text[]")
            values.append(f"u.{c.name}::{_sql_type(c)}")
        else:
            params.append(_array_param(n, c))
            values.append(f"u.{c.name}")
    source = f"unnest({', '.join(params)}) AS u({_columns(t.tickets)})"
    insert = f"INSERT INTO tickets ({_columns(t.tickets)}) SELECT {', '.join(values)} FROM {source}"
    update = ("UPDATE tickets SET " + ", ".join(f"{c} = {v}" for c, v in zip(_TICKET_ROW, values, strict=True) if c != "id")
              + f" FROM {source} WHERE tickets.id = u.id")
    return insert, update


#: One statement each for the batch's new and changed tickets, whatever their number: one array
#: parameter per column (as the floor writes). One execution, one firing of the search triggers.
_INSERT_TICKETS, _UPDATE_TICKETS = _unnest_tickets()


def lock_key(ticket_id: uuid.UUID) -> int:
    """The advisory-lock key of a ticket id: its last 64 bits (random in UUIDv4 and v7)."""
    return int.from_bytes(ticket_id.bytes[8:], "big", signed=True)


class SqlUnitOfWork(BatchChanges):
    """Opened with ``async with``; rolls back unless :meth:`commit` ran."""

    def __init__(self, engine: AsyncEngine, handoff: OutboxHandoff | None = None) -> None:
        super().__init__()
        self._engine = engine
        self._handoff = handoff
        self.conn: AsyncConnection
        self._tx: AsyncTransaction | None = None
        self._locked: set[uuid.UUID] = set()
        self._raw: asyncpg.Connection | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        self.conn = await self._engine.connect()
        self._tx = await self.conn.begin()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._tx is not None and self._tx.is_active:
                await self._tx.rollback()
        finally:
            self._raw = None
            await self.conn.close()

    # ---- reads ----------------------------------------------------------------------------
    async def start_batch(self, ticket_ids: Iterable[uuid.UUID], message_ids: Iterable[uuid.UUID], numbers: int,
                          user_ids: Iterable[uuid.UUID]) -> tuple[dict[uuid.UUID, StoredResult],
                                                                  dict[uuid.UUID, DirectoryUser]]:
        """Two statements where the reads one by one take four: the advisory locks with the ticket
        numbers and the users, then — in a statement of its own, so that its snapshot sees what a
        lock holder committed — the ticket rows ``FOR UPDATE`` with the inbox rows."""
        wanted = self._unlocked(ticket_ids)
        messages, people = list(message_ids), list(set(user_ids))
        driver = await self._driver()
        users: dict[uuid.UUID, DirectoryUser] = {}
        if wanted or numbers > 0 or people:
            rows = await driver.fetch(_LOCKS_NUMBERS_USERS, [lock_key(i) for i in wanted], max(numbers, 0), people)
            self._locked.update(wanted)
            self._numbers.extend(rows[0]["numbers"])
            users = _users_by_id(r for r in rows if r["user_id"] is not None)
        stored: dict[uuid.UUID, StoredResult] = {}
        if wanted or messages:
            rows = await driver.fetch(_TICKETS_AND_INBOX, wanted, messages)
            self._take_tickets(wanted, (row for row in rows if row["kind"] == "t"))
            stored = {row["message_id"]: _stored(row) for row in rows if row["kind"] == "i"}
        return stored, users

    async def lock_tickets(self, ids: Iterable[uuid.UUID]) -> None:
        """Lock the ids (advisory, in id order, existing or not), then load and lock the rows."""
        wanted = self._unlocked(ids)
        if not wanted:
            return
        # A statement's snapshot is taken when it starts, so the rows are read in a second
        # statement, after every advisory lock is held: it sees what a lock holder committed.
        driver = await self._driver()
        await driver.execute(_ADVISORY_LOCKS, [lock_key(i) for i in wanted])
        self._locked.update(wanted)
        self._take_tickets(wanted, await driver.fetch(_LOCK_TICKETS, wanted))

    def _unlocked(self, ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
        """The ids this batch has not locked yet, in lock order."""
        return sorted({i for i in ids if i not in self._locked})

    def _take_tickets(self, wanted: list[uuid.UUID], rows: Iterable[Any]) -> None:
        """The locked ids' rows into the identity map; the ids without a row are known absent."""
        for row in rows:
            ticket = ticket_from_row(row)
            self._tickets[ticket.id] = ticket
        self._absent.update(i for i in wanted if i not in self._tickets)

    async def load(self, ticket_id: uuid.UUID) -> Ticket | None:
        await self.lock_tickets([ticket_id])
        return self._tickets.get(ticket_id)

    async def processed(self, message_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, StoredResult]:
        """Results of commands already handled (the inbox)."""
        wanted = list(message_ids)
        if not wanted:
            return {}
        rows = await (await self._driver()).fetch(_INBOX, wanted)
        return {r["message_id"]: _stored(r) for r in rows}

    async def users(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, DirectoryUser]:
        wanted = list(set(ids))
        if not wanted:
            return {}
        return _users_by_id(await (await self._driver()).fetch(_USERS, wanted))

    async def user_by_email(self, email: str) -> DirectoryUser | None:
        stmt = select(t.users).where(t.users.c.email == email.lower()).order_by(t.users.c.active.desc()).limit(1)
        row = (await self.conn.execute(stmt)).first()
        return user_from_row(row._mapping) if row else None

    async def email_known(self, message_ids: Iterable[str]) -> dict[str, KnownEmail]:
        """Known email Message-IDs → (ticket id, command id that recorded them, outbound)."""
        ids = list(message_ids)
        pending = {i: KnownEmail(r["ticket_id"], r["command_id"], r["outbound"])
                   for i in ids if (r := self._emails.get(i))}
        em = t.email_messages
        stmt = (select(em.c.message_id, em.c.ticket_id, em.c.command_id, em.c.outbound)
                .where(em.c.message_id == any_(_texts)))
        rows = await self.conn.execute(stmt, {"texts": ids})
        return {r.message_id: KnownEmail(r.ticket_id, r.command_id, r.outbound) for r in rows} | pending

    async def new_tickets_by_mail(self, from_address: str, since: datetime) -> int:
        """Tickets opened by the sender's mails since ``since``: committed and in this batch."""
        em = t.email_messages
        stmt = select(func.count()).select_from(em).where(
            em.c.from_address == from_address, em.c.created_at > since, em.c.reply_id.is_(None),
            em.c.ticket_id.is_not(None), em.c.outbound.is_(False))
        stored = await self.conn.scalar(stmt) or 0
        return stored + self.pending_new_tickets_by_mail(from_address, since)

    async def users_by_email(self, addresses: Iterable[str]) -> dict[str, DirectoryUser]:
        """Directory users by (lower-case) address; an active user wins over an inactive one."""
        wanted = sorted({a.lower() for a in addresses})
        if not wanted:
            return {}
        stmt = select(t.users).where(t.users.c.email == any_(_texts)).order_by(t.users.c.active)
        rows = await self.conn.execute(stmt, {"texts": wanted})
        return {u.email: u for u in (user_from_row(r._mapping) for r in rows)}

    async def known_attachments(self, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these attachment ids are taken: stored, or added earlier in this batch."""
        wanted = set(ids)
        if not wanted:
            return set()
        stmt = select(t.attachments.c.id).where(t.attachments.c.id == any_(_ids))
        stored = set((await self.conn.execute(stmt, {"ids": list(wanted)})).scalars())
        return stored | (wanted & self.pending_attachment_ids())

    async def attachment(self, attachment_id: uuid.UUID) -> Attachment | None:
        """An attachment as this batch sees it (changed in memory, else as stored)."""
        if (pending := self.pending_attachment(attachment_id)) is not None:
            return pending
        row = (await self.conn.execute(select(t.attachments).where(t.attachments.c.id == attachment_id))).first()
        return attachment_from_row(row._mapping) if row else None

    async def result_of(self, command_id: uuid.UUID) -> StoredResult | None:
        return (await self.processed([command_id])).get(command_id)

    async def ticket_id_by_number(self, number: str) -> uuid.UUID | None:
        row = (await self.conn.execute(select(t.tickets.c.id).where(t.tickets.c.number == number))).first()
        return row.id if row else None

    async def reserve_numbers(self, count: int) -> None:
        """Draw ticket numbers for the batch's new tickets in one round trip (gaps are allowed)."""
        if count <= 0:
            return
        self._numbers.extend(r[0] for r in await (await self._driver()).fetch(_NUMBERS, count))

    async def commit(self) -> None:
        """Write every change of the batch, then COMMIT."""
        rows = self.rows()
        c = self.conn
        try:
            driver = await self._driver()
            if rows.new_tickets:
                await driver.execute(_INSERT_TICKETS, *_ticket_arrays(rows.new_tickets))
            if rows.changed_tickets:
                await driver.execute(_UPDATE_TICKETS, *_ticket_arrays(rows.changed_tickets))
            outbox = bool(rows.events or rows.inbox)
            # Handed to this process's relay after the commit, when it leads and nothing rewrites
            # the rows before then (a redaction scrubs what the batch wrote): no NOTIFY, no read back.
            handoff = self._handoff if outbox and not rows.redactions and self._handoff is not None \
                and self._handoff.leading else None
            # One round trip for the bulk of the batch: replies, time entries, history, inbox, NOTIFY.
            seqs = await _insert_all(driver, [
                (t.replies, [reply_to_row(r) for r in rows.replies]),
                (t.time_entries, [time_entry_to_row(e) for e in rows.time_entries]),
                (t.ticket_events, rows.events),
                (t.processed_commands, rows.inbox),
            ], notify=outbox and handoff is None, returning=handoff is not None)
            if rows.attachments:  # after the replies they belong to
                await c.execute(insert(t.attachments), [attachment_to_row(a) for a in rows.attachments])
            if rows.scans:
                await c.execute(_UPDATE_SCAN, [{"b_id": a.id, "b_scan_status": a.scan_status, "b_scanner": a.scanner,
                                                "b_scanned_at": a.scanned_at} for a in rows.scans])
            if rows.emails:
                await c.execute(insert(t.email_messages), rows.emails)
            if rows.redactions:  # last: scrubs what this batch wrote too
                await carry_out(c, rows.redactions)
            assert self._tx is not None
            await self._tx.commit()
        except IntegrityError as refused:
            raise ConstraintViolation(type(refused.orig).__name__) from refused
        except asyncpg.IntegrityConstraintViolationError as refused:  # from the statements run on asyncpg
            raise ConstraintViolation(type(refused).__name__) from refused
        if handoff is not None and not handoff.hand_off(*_handed(rows.events, rows.inbox, seqs)):
            # The relay stopped leading between the insert and now: wake whichever instance leads.
            await (await self._driver_after_commit()).execute(_NOTIFY)

    async def _driver_after_commit(self) -> asyncpg.Connection:
        """The same connection once the transaction has ended: a statement on it autocommits."""
        fairy = await self.conn.get_raw_connection()
        return fairy.driver_connection  # type: ignore[no-any-return]

    async def _driver(self) -> asyncpg.Connection:
        """The asyncpg connection under this unit of work's transaction, for the hot-path statements.

        SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its own first statement; a statement
        sent straight to the driver first would run outside any transaction (its advisory locks
        released at once, its writes autocommitted). So the adapter is made to start its
        transaction here — SQLAlchemy's commit and rollback then end it as usual.

        BEGIN is often the first use of a pooled connection, so it is where a connection the
        server dropped shows up. SQLAlchemy, had it sent the BEGIN, would invalidate the
        connection (the pool opens a new one) and raise a wrapped error; here the connection is
        invalidated the same way and asyncpg's own error raised, as for every statement sent
        straight to asyncpg (the retry policy knows both)."""
        if self._raw is None:
            fairy = await self.conn.get_raw_connection()
            driver: asyncpg.Connection = fairy.driver_connection
            if not driver.is_in_transaction():
                try:
                    await cast(Any, fairy.dbapi_connection)._start_transaction()
                except Exception as error:
                    closed = driver.is_closed()
                    await self.conn.invalidate()
                    cause = error.__cause__ or error  # the adapter's wrapper hides it
                    if closed and not isinstance(cause, asyncpg.ConnectionDoesNotExistError):
                        # Whatever asyncpg raised (an InternalClientError when the server's goodbye
                        # arrives as BEGIN starts, seen in CI): a lost connection, which is retried.
                        raise asyncpg.ConnectionDoesNotExistError("the connection closed as the transaction began") \
                            from cause
                    raise cause from None
            if not driver.is_in_transaction():
                raise RuntimeError("the unit of work's connection is not in a transaction")
            self._raw = driver
        return self._raw


def _users_by_id(rows: Iterable[Any]) -> dict[uuid.UUID, DirectoryUser]:
    return {u.user_id: u for u in map(user_from_row, rows)}


def _stored(row: Any) -> StoredResult:
    return StoredResult(result_from_json(row["result"]), row["reply_to"], row["fingerprint"])


def _ticket_arrays(tickets: list[Ticket]) -> list[list[Any]]:
    """The tickets' rows as one list per column (the statements' array parameters)."""
    rows = [ticket_to_row(x) for x in tickets]
    return [[array_literal(r[c]) for r in rows] if c in _ARRAY_COLUMNS else [r[c] for r in rows]
            for c in _TICKET_ROW]


def array_literal(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal of ``values``, every element double-quoted (so no element —
    ``NULL``, commas, braces, quotes, backslashes, blanks — is read as anything but its text)."""
    return "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"



async def _insert_all(driver: asyncpg.Connection, inserts: list[tuple[Table, list[dict[str, Any]]]], *,
                      notify: bool, returning: bool = False) -> dict[Any, int]:
    """Every row of every table in ONE statement: a data-modifying CTE per table, each
    ``INSERT … SELECT * FROM unnest($1::type[], …)`` (one array parameter per column), and the
    relay's NOTIFY as the final SELECT. One plan, one round trip, one firing of each statement
    trigger, whatever the number of rows. Constraints (unique keys, foreign keys) are checked at
    the end of the statement, so the order of the tables does not matter.

    ``returning``: the final SELECT returns the outbox rows' ``seq``s instead, as
    ``{event_id or message_id: seq}`` (for the relay's hand-off)."""
    present = [(table, rows) for table, rows in inserts if rows]
    if not present and not notify:
        return {}
    shape = tuple((table.name, tuple(rows[0])) for table, rows in present) + ((("notify",),) if notify else ()) \
        + ((("returning",),) if returning else ())
    sql = _STATEMENTS.get(shape)
    if sql is None:
        sql = _STATEMENTS[shape] = _combined_insert([(table, tuple(rows[0])) for table, rows in present], notify,
                                                    returning)
    arrays = [[row[name] for row in rows] for _, rows in present for name in rows[0]]
    if not returning:
        await driver.execute(sql, *arrays)
        return {}
    return {row[0]: row[1] for row in await driver.fetch(sql, *arrays)}


_NOTIFY = f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')"
#: The outbox tables' key per row, returned with its ``seq`` for the relay's hand-off.
_OUTBOX_KEYS = {t.ticket_events.name: "event_id", t.processed_commands.name: "message_id"}


def _combined_insert(tables: list[tuple[Table, tuple[str, ...]]], notify: bool, returning: bool = False) -> str:
    ctes, number, outboxes = [], 0, []
    for table, columns in tables:
        arrays = []
        for name in columns:
            number += 1
            arrays.append(_array_param(number, table.c[name]))
        back = ""
        if returning and table.name in _OUTBOX_KEYS:
            back = f" RETURNING {_OUTBOX_KEYS[table.name]} AS key, seq"
            outboxes.append(f"SELECT key, seq FROM {table.name}_rows")
        ctes.append(f"{table.name}_rows AS (INSERT INTO {table.name} ({', '.join(columns)}) "
                    f"SELECT * FROM unnest({', '.join(arrays)}){back})")
    if outboxes:
        final = " UNION ALL ".join(outboxes)
    else:
        final = _NOTIFY if notify else "SELECT 1"
    return (f"WITH {', '.join(ctes)} " if ctes else "") + final


def _handed(events: list[dict[str, Any]], inbox: list[dict[str, Any]],
            seqs: dict[Any, int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The batch's outbox rows as the relay reads them (``seq`` order; a result's JSON as ``body``)."""
    def row(seq: int, values: dict[str, Any], body: str, reply_to: str | None) -> dict[str, Any]:
        return {"seq": seq, "ticket_id": values["ticket_id"], "body": body, "reply_to": reply_to,
                "traceparent": values.get("traceparent"), "tracestate": values.get("tracestate")}

    handed_events = sorted((row(seqs[e["event_id"]], e, e["body"], None) for e in events), key=_by_seq)
    handed_results = sorted((row(seqs[r["message_id"]], r, r["result"], r["reply_to"]) for r in inbox), key=_by_seq)
    return handed_events, handed_results


def _by_seq(row: dict[str, Any]) -> int:
    return row["seq"]  # type: ignore[no-any-return]


_STATEMENTS: dict[tuple[Any, ...], str] = {}


_UPDATE_SCAN = (
    update(t.attachments)
    .where(t.attachments.c.id == bindparam("b_id"))
    .values({c: bindparam("b_" + c) for c in ("scan_status", "scanner", "scanned_at")})
)
