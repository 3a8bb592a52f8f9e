"""The message bus of the command side: a batch of commands in one unit of work.

For each command, in partition order: skip it if the inbox knows it (its stored result is
sent again), else run its handler on the in-memory aggregates; a domain error becomes a
rejection, anything else rolls that command back in memory and reports it as failed (the
entrypoint dead-letters it). Then one commit writes everything. A rejection never touches
the database, so one bad command cannot undo the others.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ticket_contracts.commands import AssignTicket, CommandBase, CreateTicket

from service.adapters.serialization import event_json, result_json
from service.adapters.unit_of_work import SqlUnitOfWork
from service.domain.errors import DomainError
from service.domain.ticket import Ticket
from service.domain.values import Actor

from .commands import handlers
from .context import CommandContext, Limits
from .email import AlreadyIngested

_HANDLERS = handlers()


@dataclass(slots=True)
class Incoming:
    """A command taken off the topic: decoded, or with the reason it failed validation."""

    message_id: uuid.UUID
    command_type: str
    correlation_id: uuid.UUID
    reply_to: str | None
    actor: Actor | None
    ticket_id: uuid.UUID | None
    command: CommandBase | None = None
    invalid: str | None = None
    invalid_reason: str = "validation_error"


@dataclass(slots=True)
class Outcome:
    message_id: uuid.UUID
    result: str | None  # the result JSON; None when the command failed unexpectedly
    reply_to: str | None
    ticket_id: uuid.UUID | None
    status: str = "accepted"  # accepted | rejected | duplicate | failed
    reason: str | None = None
    error: BaseException | None = None


async def handle_batch(items: list[Incoming], uow: SqlUnitOfWork, limits: Limits | None = None) -> list[Outcome]:
    now = datetime.now(UTC)
    limits = limits or Limits()
    async with uow:
        await uow.lock_tickets(i.ticket_id for i in items if i.ticket_id)
        stored = await uow.processed(i.message_id for i in items)
        await uow.reserve_numbers(sum(isinstance(i.command, CreateTicket) for i in items))
        users = await uow.users(
            i.command.payload.assignee_id for i in items
            if isinstance(i.command, AssignTicket) and i.command.payload.assignee_id
        )
        outcomes: list[Outcome] = []
        done: dict[uuid.UUID, Outcome] = {}
        touched: dict[uuid.UUID, Ticket] = {}
        for item in items:
            if (previous := stored.get(item.message_id)) is not None:
                outcome = Outcome(item.message_id, previous.result, previous.reply_to or item.reply_to,
                                  item.ticket_id, "duplicate")
            elif (seen := done.get(item.message_id)) is not None:
                outcome = Outcome(item.message_id, seen.result, seen.reply_to, item.ticket_id, "duplicate")
            else:
                ctx = CommandContext(item.actor, now, item.message_id, users, limits=limits) if item.actor else None
                outcome = await _run(item, ctx, uow, touched, done)
                done[item.message_id] = outcome
            outcomes.append(outcome)
        await uow.commit(touched.values())
    return outcomes


async def _run(
    item: Incoming, ctx: CommandContext | None, uow: SqlUnitOfWork, touched: dict[uuid.UUID, Ticket],
    done: dict[uuid.UUID, Outcome],
) -> Outcome:
    if item.invalid is not None or ctx is None or item.command is None:
        return _finish(item, uow, now=_now(ctx), reason=item.invalid_reason, message=item.invalid or "invalid")
    watched = _Watched(uow)
    try:
        ticket = await _HANDLERS[item.command_type](item.command, ctx, watched)
    except DomainError as error:
        return _finish(item, uow, now=ctx.now, reason=error.code, message=error.message)
    except AlreadyIngested as again:
        first = done.get(again.command_id) or await _stored(uow, again.command_id)
        return _finish(item, uow, now=ctx.now, copy_of=first)
    except Exception as error:  # a bug or a database fault: undo in memory, let the caller decide
        uow.undo(None, None, item.message_id)  # its email rows
        for ticket_id, before in watched.before.items():  # every ticket it loaded or added, not just item's
            uow.undo(ticket_id, before, item.message_id)
            if before is not None and ticket_id in touched:
                touched[ticket_id] = before
        return Outcome(item.message_id, None, item.reply_to, item.ticket_id, "failed", error=error)
    events = ticket.take_events()
    uow.record_events([_event_row(e, item, ctx) for e in events])
    if events:
        touched[ticket.id] = ticket
    return _finish(item, uow, now=ctx.now, ticket_id=ticket.id, event_ids=[e.event_id for e in events],
                   version=ticket.version, unknown_cc=ctx.unknown_cc)


def _finish(
    item: Incoming, uow: SqlUnitOfWork, *, now: datetime, ticket_id: uuid.UUID | None = None,
    event_ids: list[uuid.UUID] | None = None, version: int | None = None, reason: str | None = None,
    message: str | None = None, copy_of: Outcome | None = None, unknown_cc: list[str] | None = None,
) -> Outcome:
    """Build the result, record it in the inbox, and return the outcome."""
    ticket_id = ticket_id or item.ticket_id
    if copy_of is not None and copy_of.result is not None:  # the same outcome, addressed to this command
        first = json.loads(copy_of.result)
        ticket_id, reason, message = _uuid(first["ticket_id"]), first["reason"], first["message"]
        event_ids, version = [uuid.UUID(e) for e in first["event_ids"]], first["ticket_version"]
        unknown_cc = first.get("unknown_cc")
    result = result_json(
        message_id=uuid.uuid4(), command_id=item.message_id, command_type=item.command_type,
        correlation_id=item.correlation_id, actor=item.actor, ticket_id=ticket_id, sent_at=now,
        event_ids=event_ids, ticket_version=version, reason=reason, message=message, unknown_cc=unknown_cc,
    )
    status = "rejected" if reason else "accepted"
    uow.record_processed({
        "message_id": item.message_id, "command_type": item.command_type, "ticket_id": ticket_id,
        "processed_at": now, "status": status, "result": result, "reply_to": item.reply_to,
    })
    return Outcome(item.message_id, result, item.reply_to, ticket_id, status, reason)


async def _stored(uow: SqlUnitOfWork, command_id: uuid.UUID) -> Outcome | None:
    stored = await uow.result_of(command_id)
    if stored is None:
        return None
    reason = json.loads(stored.result).get("reason")
    return Outcome(command_id, stored.result, stored.reply_to, None, "rejected" if reason else "accepted", reason)


def _event_row(event: Any, item: Incoming, ctx: CommandContext) -> dict[str, Any]:
    return {
        "event_id": event.event_id, "ticket_id": event.ticket_id, "ticket_version": event.version,
        "type": event.type, "internal": event.internal, "occurred_at": event.occurred_at,
        "body": event_json(event, ctx.on_behalf_of or ctx.actor, item.correlation_id, item.message_id),
    }


class _Watched:
    """The unit of work as one handler sees it: keeps a copy of every ticket as it was before the
    handler first got it (None for one it adds), so that a crash can be undone in memory — also
    for handlers whose ticket is not the command's ``ticket_id`` (``ticket.ingest_email``)."""

    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow
        self.before: dict[uuid.UUID, Ticket | None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._uow, name)

    def get(self, ticket_id: uuid.UUID) -> Ticket | None:
        return self._watch(ticket_id, self._uow.get(ticket_id))

    async def load(self, ticket_id: uuid.UUID) -> Ticket | None:
        return self._watch(ticket_id, await self._uow.load(ticket_id))

    def add(self, ticket: Ticket) -> None:
        self.before.setdefault(ticket.id, None)
        self._uow.add(ticket)

    def _watch(self, ticket_id: uuid.UUID, ticket: Ticket | None) -> Ticket | None:
        if ticket_id not in self.before:
            self.before[ticket_id] = _copy(ticket)
        return ticket


def _copy(ticket: Ticket | None) -> Ticket | None:
    return ticket.copy() if ticket is not None else None


def _now(ctx: CommandContext | None) -> datetime:
    return ctx.now if ctx else datetime.now(UTC)


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None
