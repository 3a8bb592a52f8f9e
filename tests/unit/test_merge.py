"""``ticket.merge``: the rules, both tickets' effects in one command, and what follows a merge."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from ticket_contracts import commands as c
from ticket_contracts import parse_event

from service.domain.values import Role, Status

from .fakes import (
    CUSTOMER_B,
    FakeUnitOfWork,
    admin,
    agent,
    customer,
    incoming,
    log_time,
    reply,
    run_one,
    seed_ticket,
    seed_user,
    system,
)
from .test_batch import mail_about


def merge(actor: Any, source: uuid.UUID, target: uuid.UUID, **extra: Any) -> Any:
    return incoming(c.MergeTicket(actor=actor, payload={"ticket_id": source, "into_ticket_id": target, **extra}))


async def test_a_merge_closes_the_source_and_records_it_on_both_tickets() -> None:
    uow = FakeUnitOfWork()
    source = seed_ticket(uow, Status.OPEN, version=4)
    target = seed_ticket(uow, Status.PENDING, version=2)

    result = await run_one(uow, merge(agent(), source.id, target.id, reason="same printer"))

    assert (result["status"], result["ticket_id"], result["ticket_version"]) == ("accepted", str(source.id), 6)
    on_source = [parse_event(_json(e)) for e in uow.events if e["ticket_id"] == source.id]
    on_target = [parse_event(_json(e)) for e in uow.events if e["ticket_id"] == target.id]
    assert [(e.type, e.ticket_version) for e in on_source] == [("ticket.merged", 5), ("ticket.status_changed", 6)]
    assert [(e.type, e.ticket_version) for e in on_target] == [("ticket.merge_received", 3)]
    merged, closed = on_source
    assert (merged.payload.into_ticket_id, merged.payload.into_number) == (target.id, target.number)
    assert (closed.payload.to_status, closed.payload.automatic) == ("closed", True)
    assert target.number in (closed.payload.reason or "")
    received = on_target[0].payload
    assert (received.from_ticket_id, received.from_number) == (source.id, source.number)
    assert result["event_ids"] == [str(e.event_id) for e in (*on_source, *on_target)]

    after_source, after_target = uow.ticket(source.id), uow.ticket(target.id)
    assert (after_source.status, after_source.merged_into, after_source.version) == (Status.CLOSED, target.id, 6)
    assert (after_target.status, after_target.merged_from, after_target.version) == (Status.PENDING, [source.id], 3)


def _json(row: dict[str, Any]) -> str:
    return str(row["body"])


@pytest.mark.parametrize(("case", "reason"), [
    ("into itself", "invalid_merge"),
    ("other customer's target", "invalid_merge"),
    ("missing target", "not_found"),
    ("deleted target", "not_found"),
    ("closed target", "ticket_closed"),
    ("closed source", "ticket_closed"),
    ("stale version", "conflict"),
])
async def test_a_merge_that_breaks_a_rule_changes_nothing(case: str, reason: str) -> None:
    uow = FakeUnitOfWork()
    source = seed_ticket(uow, Status.CLOSED if case == "closed source" else Status.OPEN, version=2)
    target_id = {
        "into itself": source.id,
        "other customer's target": seed_ticket(uow, Status.OPEN, customer_id=CUSTOMER_B).id,
        "missing target": uuid.uuid4(),
        "deleted target": seed_ticket(uow, Status.OPEN, deleted=True).id,
        "closed target": seed_ticket(uow, Status.CLOSED).id,
    }.get(case) or seed_ticket(uow, Status.OPEN).id
    extra = {"expected_version": 1} if case == "stale version" else {}
    before = dict(uow.tickets)

    result = await run_one(uow, merge(admin(), source.id, target_id, **extra))

    assert (result["status"], result["reason"]) == ("rejected", reason), result["message"]
    assert uow.events == [] and uow.tickets == before


@pytest.mark.parametrize(("sender", "whose", "reason"), [
    ("customer", "own", "forbidden"),
    ("customer", "other", "not_found"),
    ("system", "own", "forbidden"),
])
async def test_only_staff_merge(sender: str, whose: str, reason: str) -> None:
    uow = FakeUnitOfWork()
    source, target = seed_ticket(uow, Status.OPEN), seed_ticket(uow, Status.OPEN)
    actor = {"customer": customer(CUSTOMER_B if whose == "other" else source.customer_id), "system": system()}[sender]
    result = await run_one(uow, merge(actor, source.id, target.id))
    assert (result["status"], result["reason"]) == ("rejected", reason)
    assert uow.events == []


async def test_commands_on_a_merged_ticket_are_ticket_closed_naming_the_target() -> None:
    uow = FakeUnitOfWork()
    source, target = seed_ticket(uow, Status.OPEN), seed_ticket(uow, Status.OPEN)
    await run_one(uow, merge(agent(), source.id, target.id))

    for command in (reply(agent(), source.id), log_time(agent(), source.id),
                    merge(agent(), source.id, target.id), merge(agent(), target.id, source.id)):
        result = await run_one(uow, command)
        assert (result["status"], result["reason"]) == ("rejected", "ticket_closed")
        assert str(target.id) in result["message"]


async def test_an_email_threading_to_a_merged_ticket_lands_on_the_target_following_the_chain() -> None:
    uow = FakeUnitOfWork()
    user = seed_user(uow, Role.CUSTOMER, email="ann@example.com")
    first, second, last = (seed_ticket(uow, Status.OPEN, customer_id=user.customer_id) for _ in range(3))
    await run_one(uow, merge(agent(), first.id, second.id))
    await run_one(uow, merge(agent(), second.id, last.id))
    tickets_before = len(uow.tickets)

    result = await run_one(uow, mail_about(first))  # the subject names the first, long merged, ticket

    assert (result["status"], result["ticket_id"]) == ("accepted", str(last.id))
    assert len(uow.tickets) == tickets_before  # a reply, never a follow-up ticket
    [added] = list(uow.replies.values())
    assert added.ticket_id == last.id


async def test_the_merge_and_later_commands_on_the_target_in_one_batch_keep_versions_gapless() -> None:
    uow = FakeUnitOfWork()
    source, target = seed_ticket(uow, Status.OPEN, version=1), seed_ticket(uow, Status.OPEN, version=1)
    staff = agent()
    from .fakes import run
    outcomes = await run(uow, log_time(staff, target.id), merge(staff, source.id, target.id),
                         log_time(staff, target.id), reply(staff, source.id))
    assert [o.reason for o in outcomes] == [None, None, None, "ticket_closed"]
    assert [e["ticket_version"] for e in uow.events if e["ticket_id"] == target.id] == [2, 3, 4]
    assert [e["ticket_version"] for e in uow.events if e["ticket_id"] == source.id] == [2, 3]


@pytest.mark.parametrize("status", [s for s in Status if s is not Status.CLOSED])
@pytest.mark.parametrize("side", ["source", "target"])
async def test_a_merge_works_from_every_status_but_closed(status: Status, side: str) -> None:
    """The status table for merges: any open status on either side; the source always ends closed."""
    uow = FakeUnitOfWork()
    source = seed_ticket(uow, status if side == "source" else Status.OPEN)
    target = seed_ticket(uow, status if side == "target" else Status.OPEN)
    result = await run_one(uow, merge(agent(), source.id, target.id))
    assert result["status"] == "accepted", result["message"]
    assert uow.ticket(source.id).status is Status.CLOSED
    assert uow.ticket(target.id).status is (status if side == "target" else Status.OPEN)
