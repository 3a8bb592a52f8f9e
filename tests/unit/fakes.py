"""An in-memory unit of work for the command side, and builders for seeding it and for commands.

``FakeUnitOfWork`` implements the one unit-of-work protocol
(:class:`service.handlers.unit_of_work.UnitOfWork`) over dicts, as the SQL one does over
PostgreSQL. Like the real one it keeps a batch's work in memory and writes it only in
:meth:`FakeUnitOfWork.commit`, serialising events and results with the same code; committed
tickets are stored as rows (via the real row mapping), so no in-memory object of a batch is ever
shared with the store and a batch that does not commit leaves nothing behind. ``commit`` enforces
the unique keys the database enforces, and raises :class:`FakeIntegrityError` (a
:class:`~service.handlers.unit_of_work.ConstraintViolation`) where PostgreSQL would.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from ticket_contracts import commands as c
from ticket_contracts.envelope import Actor as ContractActor

from service.adapters.batch_changes import BatchChanges, Rows
from service.adapters.rows import ticket_from_row, ticket_to_row
from service.adapters.serialization import result_from_json, result_json
from service.domain.attachments import Attachment
from service.domain.email import KnownEmail
from service.domain.ticket import Ticket, format_number
from service.domain.values import Actor, DirectoryUser, Role, Status
from service.handlers.bus import MessageBus, handle_batch
from service.handlers.messages import Incoming, Outcome
from service.handlers.unit_of_work import ConstraintViolation, StoredResult


class FakeIntegrityError(ConstraintViolation):
    """A unique key the database would have refused; nothing of the batch is written."""


class FakeUnitOfWork(BatchChanges):
    def __init__(self) -> None:
        # committed state ("the database")
        self.tickets: dict[uuid.UUID, dict[str, Any]] = {}
        self.replies: dict[uuid.UUID, Any] = {}
        self.time_entries: dict[uuid.UUID, Any] = {}
        self.events: list[dict[str, Any]] = []
        self.inbox: dict[uuid.UUID, dict[str, Any]] = {}
        self.emails: dict[str, dict[str, Any]] = {}
        self.attachments: dict[uuid.UUID, Attachment] = {}
        self.directory: dict[uuid.UUID, DirectoryUser] = {}
        self.commits = 0
        self._sequence = itertools.count(1)  # like a PostgreSQL sequence: never rolled back
        self._open = False
        self._reset()

    def _reset(self) -> None:
        BatchChanges.__init__(self)

    async def __aenter__(self) -> FakeUnitOfWork:
        assert not self._open, "the unit of work is already open"
        self._reset()
        self._open = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reset()  # whatever was not committed is gone
        self._open = False

    def _check_open(self) -> None:
        assert self._open, "used outside `async with`"

    # ---- reads ----------------------------------------------------------------------------
    async def lock_tickets(self, ids: Iterable[uuid.UUID]) -> None:
        self._check_open()
        for ticket_id in sorted({i for i in ids if i not in self._tickets}):
            if ticket_id in self.tickets:
                self._tickets[ticket_id] = _ticket(self.tickets[ticket_id])

    async def load(self, ticket_id: uuid.UUID) -> Ticket | None:
        await self.lock_tickets([ticket_id])
        return self._tickets.get(ticket_id)

    async def processed(self, message_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, StoredResult]:
        self._check_open()
        return {i: StoredResult(result_from_json(r["result"]), r["reply_to"], r.get("fingerprint"))
                for i in message_ids if (r := self.inbox.get(i))}

    async def result_of(self, command_id: uuid.UUID) -> StoredResult | None:
        return (await self.processed([command_id])).get(command_id)

    async def users(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, DirectoryUser]:
        self._check_open()
        return {i: self.directory[i] for i in set(ids) if i in self.directory}

    async def user_by_email(self, email: str) -> DirectoryUser | None:
        self._check_open()
        matches = [u for u in self.directory.values() if u.email == email.lower()]
        return max(matches, key=lambda u: u.active, default=None)

    async def email_known(self, message_ids: Iterable[str]) -> dict[str, KnownEmail]:
        self._check_open()
        rows = self.emails | self._emails
        return {i: KnownEmail(r["ticket_id"], r["command_id"], r.get("outbound", False))
                for i in message_ids if (r := rows.get(i))}

    async def users_by_email(self, addresses: Iterable[str]) -> dict[str, DirectoryUser]:
        self._check_open()
        wanted = {a.lower() for a in addresses}
        found: dict[str, DirectoryUser] = {}
        for user in sorted(self.directory.values(), key=lambda u: u.active):  # active last: it wins
            if user.email in wanted:
                found[user.email] = user
        return found

    async def new_tickets_by_mail(self, from_address: str, since: datetime) -> int:
        self._check_open()
        stored = sum(1 for r in self.emails.values() if r.get("from_address") == from_address
                     and r["ticket_id"] is not None and r["reply_id"] is None and not r.get("outbound")
                     and r["created_at"] > since)
        return stored + self.pending_new_tickets_by_mail(from_address, since)

    async def known_attachments(self, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        self._check_open()
        wanted = set(ids)
        return (wanted & set(self.attachments)) | (wanted & self.pending_attachment_ids())

    async def attachment(self, attachment_id: uuid.UUID) -> Attachment | None:
        self._check_open()
        return self.pending_attachment(attachment_id) or self.attachments.get(attachment_id)

    async def ticket_id_by_number(self, number: str) -> uuid.UUID | None:
        self._check_open()
        return next((row["id"] for row in self.tickets.values() if row["number"] == number), None)

    async def reserve_numbers(self, count: int) -> None:
        self._check_open()
        self._numbers.extend(next(self._sequence) for _ in range(max(count, 0)))

    async def commit(self) -> None:
        """Check every unique key first, then write everything: all or nothing."""
        self._check_open()
        changes = self.rows()
        rows = {ticket.id: _row(ticket) for ticket in changes.new_tickets + changes.changed_tickets}
        self._check_unique(rows, changes)
        files = changes.attachments
        if len({a.id for a in files} | set(self.attachments)) != len(files) + len(self.attachments):
            raise FakeIntegrityError("duplicate attachment id")
        self.tickets.update(rows)
        self.attachments.update((a.id, a) for a in files + changes.scans)
        self.replies.update((r.id, r) for r in changes.replies)
        self.time_entries.update((e.id, e) for e in changes.time_entries)
        self.events.extend(changes.events)
        self.inbox.update((row["message_id"], row) for row in changes.inbox)
        self.emails.update((row["message_id"], row) for row in changes.emails)
        self.commits += 1
        self._reset()

    def _check_unique(self, rows: dict[uuid.UUID, dict[str, Any]], changes: Rows) -> None:
        for ticket_id in rows:
            if (ticket_id in self._new) == (ticket_id in self.tickets):
                raise FakeIntegrityError(f"ticket {ticket_id}: insert of an existing / update of a missing row")
        numbers = [r["number"] for r in rows.values()]
        numbers += [r["number"] for i, r in self.tickets.items() if i not in rows]
        events = self.events + changes.events
        checks = {
            "ticket number": numbers,
            "reply id": [*self.replies, *(r.id for r in changes.replies)],
            "time entry id": [*self.time_entries, *(e.id for e in changes.time_entries)],
            "event id": [e["event_id"] for e in events],
            "(ticket_id, ticket_version)": [(e["ticket_id"], e["ticket_version"]) for e in events],
            "inbox message_id": [*self.inbox, *(r["message_id"] for r in changes.inbox)],
            "email Message-ID": [*self.emails, *(r["message_id"] for r in changes.emails)],
        }
        for what, keys in checks.items():
            if len(keys) != len(set(keys)):
                raise FakeIntegrityError(f"duplicate {what}")

    # ---- for assertions -------------------------------------------------------------------
    def ticket(self, ticket_id: uuid.UUID) -> Ticket:
        """A fresh copy of the committed ticket."""
        return _ticket(self.tickets[ticket_id])

    def event_bodies(self, ticket_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
        """Committed events (as published), in commit order, optionally of one ticket."""
        return [json.loads(e["body"]) for e in self.events if ticket_id in (None, e["ticket_id"])]

    def result(self, message_id: uuid.UUID | str) -> dict[str, Any]:
        """The committed result (from the inbox) of a command, as a dict."""
        return json.loads(self.inbox[uuid.UUID(str(message_id))]["result"])


def _row(ticket: Ticket) -> dict[str, Any]:
    return {**ticket_to_row(ticket), "tags": list(ticket.tags)}


def _ticket(row: dict[str, Any]) -> Ticket:
    return ticket_from_row(row)


# ---- seeding ------------------------------------------------------------------------------
SEEDED_AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CUSTOMER_A = uuid.UUID("00000000-0000-4000-8000-00000000000a")
CUSTOMER_B = uuid.UUID("00000000-0000-4000-8000-00000000000b")


def seed_ticket(
    uow: FakeUnitOfWork, status: Status = Status.OPEN, *, customer_id: uuid.UUID = CUSTOMER_A,
    deleted: bool = False, version: int = 1, **fields: Any,
) -> Ticket:
    """Store a committed ticket in ``status`` with timestamps consistent with it; return a copy."""
    ticket_id = fields.pop("id", None) or uuid.uuid4()
    ticket = Ticket(
        id=ticket_id, number=format_number(next(uow._sequence)), customer_id=customer_id,
        created_by=uuid.uuid4(), title="Printer on fire", description="It is on fire.", status=status,
        priority="normal", channel="web", created_at=SEEDED_AT, updated_at=SEEDED_AT,
        status_changed_at=SEEDED_AT, version=version,
    )
    later = SEEDED_AT + timedelta(hours=1)
    if status is not Status.NEW:
        ticket.first_response_at = later
    if status is Status.RESOLVED:
        ticket.resolved_at = later
    if status is Status.CLOSED:
        ticket.closed_at = later
    if deleted:
        ticket.deleted_at = later
    for name, value in fields.items():
        setattr(ticket, name, value)
    uow.tickets[ticket.id] = _row(ticket)
    return uow.ticket(ticket.id)


def seed_user(
    uow: FakeUnitOfWork, role: Role, *, active: bool = True, customer_id: uuid.UUID | None = None,
    email: str | None = None, user_id: uuid.UUID | None = None,
) -> DirectoryUser:
    user_id = user_id or uuid.uuid4()
    if role is Role.CUSTOMER and customer_id is None:
        customer_id = CUSTOMER_A
    user = DirectoryUser(user_id, (email or f"{user_id.hex[:8]}@example.com").lower(), role, customer_id, active)
    uow.directory[user_id] = user
    return user


# ---- actors, commands, batches ------------------------------------------------------------
def customer(customer_id: uuid.UUID = CUSTOMER_A) -> ContractActor:
    return ContractActor(user_id=uuid.uuid4(), role="customer", customer_id=customer_id)


def agent() -> ContractActor:
    return ContractActor(user_id=uuid.uuid4(), role="agent")


def admin() -> ContractActor:
    return ContractActor(user_id=uuid.uuid4(), role="admin")


def system() -> ContractActor:
    return ContractActor(user_id=uuid.uuid4(), role="system")


def incoming(command: c.CommandBase, *, reply_to: str | None = None) -> Incoming:
    """The command as the entrypoint hands it over in development (``trust``) mode."""
    a = command.actor
    return Incoming(
        message_id=command.message_id, command_type=command.type,
        correlation_id=command.correlation_id or command.message_id, reply_to=reply_to,
        actor=Actor(a.user_id, Role(a.role.value), a.customer_id),
        ticket_id=getattr(command.payload, "ticket_id", None), command=command,
    )


def create(actor: ContractActor, ticket_id: uuid.UUID | None = None, **payload: Any) -> Incoming:
    payload = {"title": "Printer on fire", "description": "It is on fire.", **payload}
    return incoming(c.CreateTicket(actor=actor, payload={"ticket_id": ticket_id or uuid.uuid4(), **payload}))


def update(actor: ContractActor, ticket_id: uuid.UUID, **fields: Any) -> Incoming:
    return incoming(c.UpdateTicket(actor=actor, payload={"ticket_id": ticket_id, **fields}))


def change_status(actor: ContractActor, ticket_id: uuid.UUID, status: str, reason: str | None = None,
                  **extra: Any) -> Incoming:
    payload = {"ticket_id": ticket_id, "status": status, "reason": reason, **extra}
    return incoming(c.ChangeStatus(actor=actor, payload=payload))


def assign(actor: ContractActor, ticket_id: uuid.UUID, assignee_id: uuid.UUID | None, **extra: Any) -> Incoming:
    return incoming(c.AssignTicket(actor=actor, payload={"ticket_id": ticket_id, "assignee_id": assignee_id,
                                                         **extra}))


def reply(actor: ContractActor, ticket_id: uuid.UUID, *, internal: bool = False, body: str = "Hello",
          **extra: Any) -> Incoming:
    payload = {"ticket_id": ticket_id, "reply_id": uuid.uuid4(), "body": body, "internal": internal, **extra}
    return incoming(c.AddReply(actor=actor, payload=payload))


def log_time(actor: ContractActor, ticket_id: uuid.UUID, minutes: int = 15, **extra: Any) -> Incoming:
    payload = {"ticket_id": ticket_id, "entry_id": uuid.uuid4(), "minutes": minutes, **extra}
    return incoming(c.LogTime(actor=actor, payload=payload))


def delete(actor: ContractActor, ticket_id: uuid.UUID, reason: str = "spam", **extra: Any) -> Incoming:
    return incoming(c.DeleteTicket(actor=actor, payload={"ticket_id": ticket_id, "reason": reason, **extra}))


def restore(actor: ContractActor, ticket_id: uuid.UUID, **extra: Any) -> Incoming:
    return incoming(c.RestoreTicket(actor=actor, payload={"ticket_id": ticket_id, **extra}))


def redact(actor: ContractActor, ticket_id: uuid.UUID, **extra: Any) -> Incoming:
    return incoming(c.RedactTicket(actor=actor, payload={"ticket_id": ticket_id, **extra}))


async def run(uow: FakeUnitOfWork, *items: Incoming) -> list[Outcome]:
    """One batch through the real batch handler, in one unit of work (raises if it cannot commit)."""
    return await handle_batch(list(items), uow)


async def run_bus(uow: FakeUnitOfWork, *items: Incoming) -> list[Outcome]:
    """One batch through the whole bus policy (fallbacks included)."""
    return await MessageBus(lambda: uow).handle(list(items))


def result_dict(outcome: Outcome) -> dict[str, Any]:
    """The outcome's result as it is published."""
    assert outcome.result is not None, f"the command failed unexpectedly: {outcome.error!r}"
    return json.loads(result_json(outcome.result))


async def run_one(uow: FakeUnitOfWork, item: Incoming) -> dict[str, Any]:
    """One command in its own batch; its result JSON as a dict."""
    [outcome] = await run(uow, item)
    return result_dict(outcome)
