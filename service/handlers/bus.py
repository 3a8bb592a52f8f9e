"""The message bus of the command side: the whole batch policy, in the service layer.

``MessageBus.handle(items)`` runs a batch of decoded commands in ONE unit of work
(:func:`handle_batch`) and, when that fails, finds out why without losing or stalling anything:

- a transient infrastructure fault is retried in place by the injected ``retry`` policy (the
  composition root classifies faults; the bus never sees a database exception class);
- :class:`~.unit_of_work.ConstraintViolation` (e.g. a reused reply id, or a concurrent instance
  after a rebalance) re-runs the batch one command per unit of work; a command that still
  violates a constraint gets a ``conflict`` rejection;
- any other failure splits the batch in halves until the one command that causes it is alone;
  that command is reported ``failed`` (the entrypoint dead-letters it) and the rest commit.

Inside one unit of work, per command in partition order: a known ``message_id`` (the inbox) is a
duplicate whose stored result is sent again; otherwise its handler runs on the in-memory
aggregates; a domain error is a rejection; any other exception undoes that command in memory and
reports it ``failed``. The events of every ticket the handler loaded or added are recorded with
the command's stamp; one commit writes everything.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from service.domain.errors import Conflict, DomainError
from service.domain.ticket import Ticket
from service.logging import get_logger

from .context import CommandContext, Limits
from .email import AlreadyIngested
from .messages import Incoming, Outcome, Result, Stamp
from .registry import Registration, complete
from .unit_of_work import ConstraintViolation, StoredResult, UnitOfWork

T = TypeVar("T")
Retry = Callable[[Callable[[], Awaitable[T]]], Awaitable[T]]
log = get_logger(__name__)

REGISTRY: dict[str, Registration] = complete()
CONFLICT_MESSAGE = "the command conflicts with data already stored (e.g. a reused reply_id or entry_id)"
REUSED_MESSAGE = "this message_id was already used for a different command; send a new command with a new message_id"


def fingerprint(item: Incoming) -> str:
    """Who sent what under a message_id: the authenticated actor, the type and the payload (as the
    contract serialises it, so an absent field and an explicit null differ). Idempotency keys are
    scoped to the sender and bound to the request, as Stripe's are."""
    digest = hashlib.sha256()
    a = item.actor
    digest.update(f"{a.user_id}|{a.role.value}|{a.customer_id}|" .encode() if a else b"-|")
    digest.update(item.command_type.encode() + b"|")
    payload = getattr(item.command, "payload", None)
    if payload is not None:
        digest.update(payload.model_dump_json().encode())
    else:
        digest.update(f"invalid|{item.invalid_reason}|{item.invalid}".encode())
    return digest.hexdigest()


async def _once(action: Callable[[], Awaitable[T]]) -> T:
    return await action()


class MessageBus:
    """``unit_of_work`` makes a fresh unit of work per attempt; ``retry`` runs an attempt until it
    succeeds or fails with a fault it does not classify as transient."""

    def __init__(self, unit_of_work: Callable[[], UnitOfWork], retry: Retry[list[Outcome]] = _once,
                 limits: Limits | None = None) -> None:
        self._uow = unit_of_work
        self._retry = retry
        self._limits = limits or Limits()

    async def handle(self, items: list[Incoming]) -> list[Outcome]:
        if not items:
            return []
        try:
            return await self._attempt(items)
        except ConstraintViolation:
            log.warning("batch refused by a constraint, handling its commands one by one", size=len(items))
            return [o for item in items for o in await self._alone(item)]
        except Exception as error:
            if len(items) == 1:
                return [_failed(items[0], error)]
            log.warning("batch failed, splitting it to find the command that causes it", size=len(items),
                        error=type(error).__name__)
            middle = len(items) // 2
            return await self.handle(items[:middle]) + await self.handle(items[middle:])

    async def _attempt(self, items: list[Incoming]) -> list[Outcome]:
        return await self._retry(lambda: handle_batch(items, self._uow(), self._limits))

    async def _alone(self, item: Incoming) -> list[Outcome]:
        """One command in its own unit of work. A constraint again: a concurrent instance may just
        have handled it (the inbox will say so on the next try); still again: ``conflict``."""
        for _ in range(2):
            try:
                return await self._attempt([item])
            except ConstraintViolation:
                continue
            except Exception as error:
                return [_failed(item, error)]
        item.invalid, item.invalid_reason = CONFLICT_MESSAGE, Conflict.code
        try:
            return await self._attempt([item])
        except Exception as error:
            return [_failed(item, error)]


def _failed(item: Incoming, error: BaseException) -> Outcome:
    return Outcome(item.message_id, None, item.reply_to, item.ticket_id, "failed", error=error)


async def handle_batch(items: list[Incoming], uow: UnitOfWork, limits: Limits | None = None) -> list[Outcome]:
    """One attempt: the batch in one unit of work, committed — or raising, with nothing written."""
    now = datetime.now(UTC)
    async with uow:
        registrations = [REGISTRY.get(i.command_type) if i.command is not None else None for i in items]
        stored, users = await uow.start_batch(
            _ids(items, registrations, "tickets"), [i.message_id for i in items],
            sum(r.numbers for r in registrations if r is not None), _ids(items, registrations, "users"))
        outcomes: list[Outcome] = []
        done: dict[uuid.UUID, Outcome] = {}
        prints: dict[uuid.UUID, str] = {}
        for item, registration in zip(items, registrations, strict=True):
            item.fingerprint = item.fingerprint or fingerprint(item)
            if item.unauthenticated:  # answered, never recorded: a retry with a valid token is processed
                outcome = _unrecorded(item, now, item.invalid_reason, item.invalid or "not authenticated")
            elif (previous := stored.get(item.message_id)) is not None:
                if previous.fingerprint is not None and previous.fingerprint != item.fingerprint:
                    outcome = _unrecorded(item, now, Conflict.code, REUSED_MESSAGE)
                else:
                    outcome = Outcome(item.message_id, previous.result, previous.reply_to or item.reply_to,
                                      item.ticket_id, "duplicate")
            elif (seen := done.get(item.message_id)) is not None:
                if prints[item.message_id] != item.fingerprint:
                    outcome = _unrecorded(item, now, Conflict.code, REUSED_MESSAGE)
                else:
                    outcome = Outcome(item.message_id, seen.result, seen.reply_to, item.ticket_id, "duplicate")
            else:
                outcome = await _run(item, registration, now, users, uow, done, limits or Limits())
                if outcome.status != "failed":
                    done[item.message_id], prints[item.message_id] = outcome, item.fingerprint
            outcomes.append(outcome)
        await uow.commit()
    return outcomes


def _ids(items: list[Incoming], registrations: list[Registration | None], what: str) -> set[uuid.UUID]:
    ids: set[uuid.UUID] = set()
    for item, registration in zip(items, registrations, strict=True):
        if registration is not None and item.command is not None:
            payload = getattr(item.command, "payload", None)
            ids.update(i for i in getattr(registration, what)(payload) if i is not None)
        elif what == "tickets" and item.ticket_id is not None:
            ids.add(item.ticket_id)
    return ids


async def _run(item: Incoming, registration: Registration | None, now: datetime, users: dict[Any, Any],
               uow: UnitOfWork, done: dict[uuid.UUID, Outcome], limits: Limits) -> Outcome:
    if item.invalid is not None or item.actor is None or item.command is None or registration is None:
        return _finish(item, uow, now, reason=item.invalid_reason, message=item.invalid or "invalid")
    ctx = CommandContext(item.actor, now, item.message_id, users, limits=limits)
    watched = _Watched(uow)
    try:
        ticket = await registration.handler(item.command, ctx, watched)  # type: ignore[arg-type]
    except DomainError as error:
        return _finish(item, uow, now, reason=error.code, message=error.message)
    except AlreadyIngested as again:
        first = done.get(again.command_id)
        stored = first.result if first is not None else _result(await uow.result_of(again.command_id))
        return _finish(item, uow, now, copy_of=stored)
    except Exception as error:  # a bug or a database fault: undo in memory, let the caller decide
        watched.undo_command(item.message_id)
        return _failed(item, error)
    stamp = Stamp(ctx.on_behalf_of or ctx.actor, item.correlation_id, item.message_id)
    event_ids: list[uuid.UUID] = []
    for changed in watched.tickets():  # every ticket it loaded or added, in the order it first got them
        if events := changed.take_events():
            uow.record_events(events, stamp)
            event_ids.extend(e.event_id for e in events)
    return _finish(item, uow, now, ticket_id=ticket.id, event_ids=tuple(event_ids), version=ticket.version,
                   unknown_cc=tuple(ctx.unknown_cc))


def _finish(
    item: Incoming, uow: UnitOfWork, now: datetime, *, ticket_id: uuid.UUID | None = None,
    event_ids: tuple[uuid.UUID, ...] = (), version: int | None = None, reason: str | None = None,
    message: str | None = None, copy_of: Result | None = None, unknown_cc: tuple[str, ...] = (),
) -> Outcome:
    """Build the result, record it in the inbox, and return the outcome."""
    ticket_id = ticket_id or item.ticket_id
    if copy_of is not None:  # the same outcome, addressed to this command
        ticket_id, reason, message = copy_of.ticket_id, copy_of.reason, copy_of.message
        event_ids, version, unknown_cc = copy_of.event_ids, copy_of.ticket_version, copy_of.unknown_cc
    result = Result(
        message_id=uuid.uuid4(), command_id=item.message_id, command_type=item.command_type,
        correlation_id=item.correlation_id, actor=item.actor, ticket_id=ticket_id, sent_at=now,
        event_ids=event_ids, ticket_version=version, reason=reason, message=message, unknown_cc=unknown_cc,
    )
    uow.record_result(result, item.reply_to, item.fingerprint)
    return Outcome(item.message_id, result, item.reply_to, ticket_id, result.status, reason)


def _unrecorded(item: Incoming, now: datetime, reason: str, message: str) -> Outcome:
    """A rejection addressed to this sender alone, naming only what it sent; not stored as the
    outcome of the message_id (the entrypoint publishes it to command-results and its reply_to)."""
    result = Result(message_id=uuid.uuid4(), command_id=item.message_id, command_type=item.command_type,
                    correlation_id=item.correlation_id, actor=item.actor, ticket_id=item.ticket_id, sent_at=now,
                    reason=reason, message=message)
    return Outcome(item.message_id, result, item.reply_to, item.ticket_id, "rejected", reason, unrecorded=True)


def _result(stored: StoredResult | None) -> Result | None:
    return stored.result if stored is not None else None


class _Watched:
    """The unit of work as one handler sees it: keeps a copy of every ticket as it was before the
    handler first got it (None for one it adds), so that a crash can be undone in memory, and so
    that the events of every ticket the handler touched are collected — not just the one the
    result names."""

    def __init__(self, uow: UnitOfWork) -> None:
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

    def tickets(self) -> Iterable[Ticket]:
        for ticket_id in self.before:
            if (ticket := self._uow.get(ticket_id)) is not None:
                yield ticket

    def undo_command(self, command_id: uuid.UUID) -> None:
        self._uow.undo(None, None, command_id)  # its email rows
        for ticket_id, before in self.before.items():
            self._uow.undo(ticket_id, before, command_id)

    def _watch(self, ticket_id: uuid.UUID, ticket: Ticket | None) -> Ticket | None:
        if ticket_id not in self.before:
            self.before[ticket_id] = ticket.copy() if ticket is not None else None
        return ticket
