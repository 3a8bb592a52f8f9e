"""Who may do what (SPEC §5, §6), as a full matrix run through ``handle_batch``.

Every actor (a customer on their own ticket, a customer on another customer's ticket, an agent,
an admin, a service account) × every command × every ticket state (each status, live or
deleted, or no ticket at all). :func:`expected` restates the rules of SPEC §6 in the order a
reader checks them; it never calls the code under test. Each command is otherwise valid for its
actor (a customer's status change resolves, or reopens a resolved ticket with a reason), so the
matrix isolates permissions from the rules tested elsewhere.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from ticket_contracts.commands import MergeTicket
from ticket_contracts.envelope import Actor as ContractActor

from service.domain.values import Role, Status

from .fakes import (
    CUSTOMER_A,
    CUSTOMER_B,
    FakeUnitOfWork,
    admin,
    agent,
    assign,
    change_status,
    create,
    customer,
    delete,
    incoming,
    log_time,
    redact,
    reply,
    restore,
    run_one,
    seed_ticket,
    seed_user,
    system,
    update,
)

ACCEPTED = "accepted"
CUSTOMER_OWN, CUSTOMER_OTHER, AGENT, ADMIN, SYSTEM = "customer-own", "customer-other", "agent", "admin", "system"
ACTORS: dict[str, Callable[[], ContractActor]] = {
    CUSTOMER_OWN: lambda: customer(CUSTOMER_A),  # the seeded tickets belong to CUSTOMER_A
    CUSTOMER_OTHER: lambda: customer(CUSTOMER_B),
    AGENT: agent,
    ADMIN: admin,
    SYSTEM: system,
}
ROLE = {CUSTOMER_OWN: Role.CUSTOMER, CUSTOMER_OTHER: Role.CUSTOMER, AGENT: Role.AGENT, ADMIN: Role.ADMIN,
        SYSTEM: Role.SYSTEM}

#: SPEC §6 "who may": the roles allowed to issue each command at all.
CUSTOMER, STAFF, ADMIN_ONLY = {Role.CUSTOMER, Role.AGENT, Role.ADMIN}, {Role.AGENT, Role.ADMIN}, {Role.ADMIN}
WHO_MAY = {
    "update-title": CUSTOMER,        # customers: own ticket, title/description only
    "update-priority": STAFF,
    "change-status": CUSTOMER,       # customers: resolve, or reopen resolved → open (§5)
    "assign": STAFF,
    "reply-public": CUSTOMER,
    "reply-internal": STAFF,         # internal notes are staff-only
    "log-time": STAFF,
    "delete": ADMIN_ONLY,
    "restore": ADMIN_ONLY,
    "merge": STAFF,                  # into an open ticket of the same customer
    "redact": {Role.ADMIN, Role.SYSTEM},         # closed and deleted tickets too
    "redact-author": {Role.ADMIN, Role.SYSTEM},  # only one user's words
}
#: Commands an admin (and for redaction a service account) may send to a deleted ticket.
ON_DELETED = {"restore": {ADMIN}, "redact": {ADMIN, SYSTEM}, "redact-author": {ADMIN, SYSTEM}}
#: SPEC §5: closed is final — no replies, edits, status changes, assignment or time entries.
BLOCKED_WHEN_CLOSED = {"update-title", "update-priority", "change-status", "assign", "reply-public",
                       "reply-internal", "log-time", "merge"}


@dataclass(frozen=True)
class State:
    status: Status | None  # None: there is no such ticket
    deleted: bool = False

    def __str__(self) -> str:
        if self.status is None:
            return "missing"
        return f"{self.status}{'+deleted' if self.deleted else ''}"


STATES = [State(s, d) for d in (False, True) for s in Status] + [State(None)]


def expected(actor: str, command: str, state: State) -> str:
    if state.status is None:
        return "not_found"
    if actor == CUSTOMER_OTHER:
        return "not_found"  # another customer's ticket: not_found, never forbidden
    if state.deleted and actor not in ON_DELETED.get(command, ()):
        return "not_found"  # deleted: invisible to every command but an admin's restore (and redaction)
    if ROLE[actor] not in WHO_MAY[command]:
        return "forbidden"  # acting outside one's role
    if state.status is Status.CLOSED and command in BLOCKED_WHEN_CLOSED:
        return "ticket_closed"  # (deleting a closed ticket is allowed)
    if command == "restore" and not state.deleted:
        return "invalid_transition"  # nothing to restore (our decision; see the module docstring)
    return ACCEPTED


def command_for(command: str, sender: ContractActor, ticket_id: uuid.UUID, status: Status | None,
                assignee: uuid.UUID, other: uuid.UUID) -> object:
    customer_target = ("open", "changed my mind") if status is Status.RESOLVED else ("resolved", None)
    staff_target = ("in_progress", None) if status is Status.ON_HOLD else ("on_hold", "waiting for the vendor")
    builders = {
        "update-title": lambda: update(sender, ticket_id, title="A better title"),
        "update-priority": lambda: update(sender, ticket_id, priority="high"),
        "change-status": lambda: change_status(
            sender, ticket_id, *(customer_target if sender.role == "customer" else staff_target)),
        "assign": lambda: assign(sender, ticket_id, assignee),
        "reply-public": lambda: reply(sender, ticket_id),
        "reply-internal": lambda: reply(sender, ticket_id, internal=True),
        "log-time": lambda: log_time(sender, ticket_id, minutes=30),
        "delete": lambda: delete(sender, ticket_id, reason="duplicate"),
        "restore": lambda: restore(sender, ticket_id),
        "merge": lambda: incoming(MergeTicket(actor=sender, payload={"ticket_id": ticket_id, "into_ticket_id": other})),
        "redact": lambda: redact(sender, ticket_id),
        "redact-author": lambda: redact(sender, ticket_id, author_id=uuid.uuid4()),
    }
    return builders[command]()


CASES = [
    pytest.param(actor, command, state, id=f"{actor}:{command}:{state}")
    for actor, command, state in itertools.product(ACTORS, WHO_MAY, STATES)
]


@pytest.mark.parametrize(("actor", "command", "state"), CASES)
async def test_command_on_existing_ticket(actor: str, command: str, state: State) -> None:
    uow = FakeUnitOfWork()
    assignee = seed_user(uow, Role.AGENT).user_id
    other = seed_ticket(uow, Status.OPEN).id  # a merge's target: the same customer's open ticket
    if state.status is None:
        ticket_id, before = uuid.uuid4(), None
    else:
        ticket = seed_ticket(uow, state.status, deleted=state.deleted, version=3)
        ticket_id, before = ticket.id, dict(uow.tickets[ticket.id])

    result = await run_one(uow, command_for(command, ACTORS[actor](), ticket_id, state.status, assignee, other))

    want = expected(actor, command, state)
    if want == ACCEPTED:
        assert (result["status"], result["reason"]) == ("accepted", None), result["message"]
        assert result["event_ids"] and result["ticket_version"] == uow.ticket(ticket_id).version > 3
    else:
        assert (result["status"], result["reason"]) == ("rejected", want), result["message"]
        assert result["event_ids"] == [] and uow.events == []
        assert before is None or uow.tickets[ticket_id] == before  # a rejection changes nothing
    assert uow.result(result["command_id"]) == result  # recorded in the inbox either way


# ---- ticket.create: whose ticket it becomes ------------------------------------------------
CREATE_CASES = {
    # (actor, customer_id in the command): expected
    (CUSTOMER_OWN, "own"): ACCEPTED,
    (CUSTOMER_OWN, "omitted"): ACCEPTED,  # defaults to the customer's own
    (CUSTOMER_OWN, "other"): "forbidden",  # only for their own customer_id
    (AGENT, "own"): ACCEPTED,
    (AGENT, "other"): ACCEPTED,
    (AGENT, "omitted"): "validation_error",  # staff and services must say whose ticket it is
    (ADMIN, "own"): ACCEPTED,
    (ADMIN, "other"): ACCEPTED,
    (ADMIN, "omitted"): "validation_error",
    (SYSTEM, "own"): ACCEPTED,
    (SYSTEM, "other"): ACCEPTED,
    (SYSTEM, "omitted"): "validation_error",
}


@pytest.mark.parametrize(("actor", "whose", "want"),
                         [pytest.param(a, w, e, id=f"{a}:create-for-{w}") for (a, w), e in CREATE_CASES.items()])
async def test_create(actor: str, whose: str, want: str) -> None:
    uow = FakeUnitOfWork()
    customer_id = {"own": CUSTOMER_A, "other": CUSTOMER_B, "omitted": None}[whose]
    result = await run_one(uow, create(ACTORS[actor](), customer_id=customer_id))

    if want == ACCEPTED:
        assert (result["status"], result["ticket_version"]) == ("accepted", 1), result["message"]
        assert uow.ticket(uuid.UUID(result["ticket_id"])).customer_id == (customer_id or CUSTOMER_A)
    else:
        assert (result["status"], result["reason"]) == ("rejected", want)
        assert uow.tickets == {} and uow.events == []


def test_the_matrix_covers_every_outcome() -> None:
    outcomes = {expected(*case.values) for case in CASES}
    assert outcomes == {ACCEPTED, "not_found", "forbidden", "ticket_closed", "invalid_transition"}
