"""Followers (issue 10): who may add and remove whom, ``invalid_follower``, the event and the
routing snapshot — through ``handle_batch`` on the fake unit of work."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from ticket_contracts import commands as c
from ticket_contracts.envelope import Actor as ContractActor
from ticket_contracts.events import parse_event

from service.domain.values import Role, Status

from .fakes import (
    CUSTOMER_A,
    CUSTOMER_B,
    FakeUnitOfWork,
    admin,
    agent,
    customer,
    incoming,
    run_one,
    seed_ticket,
    seed_user,
    system,
)


def follow(actor: ContractActor, ticket_id: uuid.UUID, add: list[Any] = (), remove: list[Any] = (),  # type: ignore[assignment]
           **extra: Any) -> Any:
    return incoming(c.SetFollowers(actor=actor, payload={"ticket_id": ticket_id, "add": list(add),
                                                         "remove": list(remove), **extra}))


def as_actor(user: Any) -> ContractActor:
    return ContractActor(user_id=user.user_id, role=user.role.value, customer_id=user.customer_id)


def world() -> tuple[FakeUnitOfWork, Any, dict[str, Any]]:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, customer_id=CUSTOMER_A)
    users = {
        "colleague": seed_user(uow, Role.CUSTOMER, customer_id=CUSTOMER_A),
        "me": seed_user(uow, Role.CUSTOMER, customer_id=CUSTOMER_A),
        "stranger": seed_user(uow, Role.CUSTOMER, customer_id=CUSTOMER_B),
        "agent": seed_user(uow, Role.AGENT),
        "admin": seed_user(uow, Role.ADMIN),
        "inactive": seed_user(uow, Role.CUSTOMER, customer_id=CUSTOMER_A, active=False),
        "inactive_agent": seed_user(uow, Role.AGENT, active=False),
        "service": seed_user(uow, Role.SYSTEM),
    }
    return uow, ticket, users


#: who adds → whom → outcome
ADD_CASES = [
    ("agent", "colleague", "accepted"), ("agent", "agent", "accepted"), ("agent", "admin", "accepted"),
    ("admin", "colleague", "accepted"),
    ("agent", "stranger", "invalid_follower"), ("agent", "inactive", "invalid_follower"),
    ("agent", "inactive_agent", "invalid_follower"), ("agent", "service", "invalid_follower"),
    ("agent", "unknown", "invalid_follower"),
    ("customer", "colleague", "accepted"), ("customer", "me", "accepted"),
    ("customer", "agent", "forbidden"), ("customer", "stranger", "invalid_follower"),
    ("customer", "inactive", "invalid_follower"), ("customer", "unknown", "invalid_follower"),
    ("system", "colleague", "forbidden"),
]


@pytest.mark.parametrize(("who", "whom", "want"), ADD_CASES)
async def test_who_may_add_whom(who: str, whom: str, want: str) -> None:
    uow, ticket, users = world()
    actor = {"agent": agent(), "admin": admin(), "system": system(), "customer": as_actor(users["me"])}[who]
    user_id = users[whom].user_id if whom in users else uuid.uuid4()

    result = await run_one(uow, follow(actor, ticket.id, add=[user_id]))

    assert (result["reason"] or result["status"]) == want, result
    assert (uow.ticket(ticket.id).follower_ids == [user_id]) == (want == "accepted")


async def test_a_customer_of_another_customer_gets_not_found() -> None:
    uow, ticket, users = world()
    result = await run_one(uow, follow(as_actor(users["stranger"]), ticket.id, add=[users["stranger"].user_id]))
    assert result["reason"] == "not_found"


async def test_a_customer_removes_only_themselves() -> None:
    uow, ticket, users = world()
    me, colleague = users["me"], users["colleague"]
    await run_one(uow, follow(agent(), ticket.id, add=[me.user_id, colleague.user_id]))

    other = await run_one(uow, follow(as_actor(me), ticket.id, remove=[colleague.user_id]))
    mine = await run_one(uow, follow(as_actor(me), ticket.id, remove=[me.user_id]))

    assert other["reason"] == "forbidden" and mine["status"] == "accepted"
    assert uow.ticket(ticket.id).follower_ids == [colleague.user_id]


async def test_staff_remove_anyone_even_a_deactivated_user() -> None:
    uow, ticket, users = world()
    gone = users["colleague"]
    await run_one(uow, follow(agent(), ticket.id, add=[gone.user_id]))
    uow.directory[gone.user_id] = type(gone)(gone.user_id, gone.email, gone.role, gone.customer_id, False)

    assert (await run_one(uow, follow(agent(), ticket.id, remove=[gone.user_id])))["status"] == "accepted"
    assert uow.ticket(ticket.id).follower_ids == []


async def test_the_event_names_added_and_removed_and_the_snapshot_lists_followers() -> None:
    uow, ticket, users = world()
    a, b = users["colleague"].user_id, users["agent"].user_id
    await run_one(uow, follow(agent(), ticket.id, add=[a, b]))
    await run_one(uow, follow(agent(), ticket.id, add=[a], remove=[b]))  # a already follows: only b changes

    first, second = [e for e in uow.event_bodies(ticket.id)]
    for event in (first, second):
        parse_event(json.dumps(event))
    assert first["type"] == "ticket.followers_changed" and not first["internal"]
    assert first["payload"] == {"added": [str(a), str(b)], "removed": []}
    assert second["payload"] == {"added": [], "removed": [str(b)]}
    assert first["ticket"]["follower_ids"] == [str(a), str(b)] and second["ticket"]["follower_ids"] == [str(a)]


async def test_nothing_to_change_is_accepted_without_an_event() -> None:
    uow, ticket, users = world()
    a = users["colleague"].user_id
    await run_one(uow, follow(agent(), ticket.id, add=[a]))
    again = await run_one(uow, follow(agent(), ticket.id, add=[a], remove=[users["agent"].user_id]))
    assert again["status"] == "accepted" and again["event_ids"] == [] and again["ticket_version"] == 2


async def test_later_events_keep_the_followers_in_their_snapshot() -> None:
    uow, ticket, users = world()
    a = users["colleague"].user_id
    await run_one(uow, follow(agent(), ticket.id, add=[a]))
    await run_one(uow, incoming(c.AddReply(actor=agent(), payload={"ticket_id": ticket.id, "reply_id": uuid.uuid4(),
                                                                  "body": "hi"})))
    assert all(e["ticket"]["follower_ids"] == [str(a)] for e in uow.event_bodies(ticket.id))


@pytest.mark.parametrize("who", ["agent", "customer"])
async def test_not_when_closed(who: str) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.CLOSED)
    mate = seed_user(uow, Role.CUSTOMER, customer_id=CUSTOMER_A)
    actor = agent() if who == "agent" else customer()
    assert (await run_one(uow, follow(actor, ticket.id, add=[mate.user_id])))["reason"] == "ticket_closed"


async def test_expected_version_is_checked() -> None:
    uow, ticket, users = world()
    result = await run_one(uow, follow(agent(), ticket.id, add=[users["agent"].user_id], expected_version=7))
    assert result["reason"] == "conflict"


@pytest.mark.parametrize("payload", [{}, {"add": [], "remove": []}, {"add": ["U"], "remove": ["U"]}])
def test_the_contract_wants_a_change(payload: dict[str, Any]) -> None:
    same = str(uuid.uuid4())
    payload = {k: [same if x == "U" else x for x in v] for k, v in payload.items()}
    with pytest.raises(ValueError):
        c.SetFollowersPayload.model_validate({"ticket_id": uuid.uuid4(), **payload})
