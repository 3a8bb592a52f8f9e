"""The status machine of SPEC §5, exhaustively: every role × current status × target × reason.

The expected outcome of each case comes from :func:`expected`, which restates SPEC §5 in order;
it never consults the code under test. Each case runs on the aggregate (and the timestamps are
checked there) and again through ``handle_batch`` (where the customer addresses their own
ticket), so the result message carries the same reason code.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

import pytest

from service.domain.errors import DomainError, Forbidden, InvalidTransition, ReasonRequired, TicketClosed
from service.domain.events import STATUS_CHANGED
from service.domain.values import Actor, Role, Status

from .fakes import CUSTOMER_A, FakeUnitOfWork, admin, agent, change_status, customer, run_one, seed_ticket, system

NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
REASON = "waiting for the vendor"
ROLES = (Role.CUSTOMER, Role.AGENT, Role.ADMIN, Role.SYSTEM)
#: Moving out of ``resolved`` to anything but ``closed`` reopens the ticket.
REOPENING = {(Status.RESOLVED, s) for s in (Status.OPEN, Status.IN_PROGRESS, Status.PENDING, Status.ON_HOLD)}


def expected(role: Role, current: Status, target: Status, with_reason: bool) -> type[DomainError] | None:
    """SPEC §5, rule by rule; ``None`` means the move is accepted."""
    if role is Role.SYSTEM:
        return Forbidden  # service accounts do not change statuses (§6: "see §5" names people only)
    if current is Status.CLOSED:
        return TicketClosed  # closed is final
    if target is current:
        return InvalidTransition  # changing to the current status is rejected, not silently accepted
    if target is Status.NEW:
        return InvalidTransition  # nothing moves back to new
    if role is Role.CUSTOMER:
        allowed = target is Status.RESOLVED or (current, target) == (Status.RESOLVED, Status.OPEN)
        if not allowed:
            return Forbidden  # a customer may only resolve, or reopen a resolved ticket to open
    if not with_reason and (target is Status.ON_HOLD or (current, target) in REOPENING):
        return ReasonRequired  # a reason is required for on_hold and for reopening a resolved ticket
    return None


CASES = [
    pytest.param(role, current, target, with_reason,
                 id=f"{role}:{current}->{target}:{'reason' if with_reason else 'no-reason'}")
    for role, current, target, with_reason in itertools.product(ROLES, Status, Status, (True, False))
]


SENDERS = {Role.CUSTOMER: customer, Role.AGENT: agent, Role.ADMIN: admin, Role.SYSTEM: system}


def actor_of(role: Role) -> Actor:
    return Actor(uuid.uuid4(), role, CUSTOMER_A if role is Role.CUSTOMER else None)


@pytest.mark.parametrize(("role", "current", "target", "with_reason"), CASES)
def test_transition_on_the_aggregate(role: Role, current: Status, target: Status, with_reason: bool) -> None:
    ticket = seed_ticket(FakeUnitOfWork(), current, version=4)
    before_resolved_at, before_closed_at = ticket.resolved_at, ticket.closed_at
    reason = REASON if with_reason else None
    error = expected(role, current, target, with_reason)

    if error is not None:
        with pytest.raises(error) as raised:
            ticket.change_status(actor_of(role), target, reason, NOW, None)
        assert raised.value.code == error.code
        assert (ticket.status, ticket.version, ticket.pending) == (current, 4, [])
        return

    ticket.change_status(actor_of(role), target, reason, NOW, None)
    assert (ticket.status, ticket.status_reason, ticket.status_changed_at) == (target, reason, NOW)
    assert ticket.version == 5
    [event] = ticket.take_events()
    assert (event.type, event.version) == (STATUS_CHANGED, 5)
    assert event.payload == {"from_status": current.value, "to_status": target.value, "reason": reason,
                             "automatic": False}
    if target is Status.RESOLVED:
        assert ticket.resolved_at == NOW
    elif (current, target) in REOPENING:
        assert ticket.resolved_at is None
    else:
        assert ticket.resolved_at == before_resolved_at  # e.g. resolved → closed keeps it
    assert ticket.closed_at == (NOW if target is Status.CLOSED else before_closed_at)


@pytest.mark.parametrize(("role", "current", "target", "with_reason"), CASES)
async def test_transition_through_the_batch(role: Role, current: Status, target: Status, with_reason: bool) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, current, version=4)
    sender = SENDERS[role]()  # the customer is the ticket's own (CUSTOMER_A)
    result = await run_one(uow, change_status(sender, ticket.id, target.value, REASON if with_reason else None))

    error = expected(role, current, target, with_reason)
    if error is None:
        assert (result["status"], result["reason"], result["ticket_version"]) == ("accepted", None, 5)
        assert uow.ticket(ticket.id).status is target
    else:
        assert (result["status"], result["reason"]) == ("rejected", error.code)
        assert uow.ticket(ticket.id).status is current
        assert uow.events == []


def test_the_table_is_not_trivial() -> None:
    """Guard against a table that says 'accepted' (or one error) everywhere."""
    outcomes = [expected(*case.values) for case in CASES]
    assert {None, Forbidden, TicketClosed, InvalidTransition, ReasonRequired} == set(outcomes)
    # Staff, per role: 31 moves (6 out of new, 5 out of each other open status); all 31 with a
    # reason, 23 without (5 into on_hold and 3 reopenings need one). Customers: 5 resolves with
    # or without a reason, and resolved → open with one.
    assert outcomes.count(None) == 2 * (31 + 23) + (5 * 2 + 1)
