"""Every event and result the service writes is a valid ``ticket_contracts`` message, and each
event's snapshot is the ticket right after *that* event (SPEC §7).

One scenario touches every event type; it runs once command by command and once as a single
batch (where every intermediate state lives only in memory). The expected snapshots are written
out by hand below, one row per event.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from ticket_contracts import events as contract_events
from ticket_contracts import parse_event, parse_result
from ticket_contracts.results import CommandResult

from service.domain.values import Role
from service.adapters.serialization import result_json
from service.handlers.messages import Incoming

from .fakes import (
    FakeUnitOfWork,
    admin,
    agent,
    assign,
    change_status,
    create,
    customer,
    delete,
    log_time,
    reply,
    restore,
    run,
    seed_user,
    update,
)

TICKET = uuid.uuid4()
OWNER, STAFF, BOSS = customer(), agent(), admin()
ASSIGNEE = uuid.uuid4()
Y, N = True, False

#: name, command, then one row per event it records:
#:   type, internal, automatic | snapshot: status, priority, assigned, first_response, resolved, closed, deleted
SCENARIO: list[tuple[str, Incoming, list[tuple[Any, ...]]]] = [
    ("create", create(OWNER, TICKET, tags=["printer"]), [
        ("created", N, None, "new", "normal", N, N, N, N, N)]),
    ("update", update(STAFF, TICKET, priority="high", tags=["printer", "vip"]), [
        ("updated", N, None, "new", "high", N, N, N, N, N)]),
    ("assign", assign(BOSS, TICKET, ASSIGNEE), [
        ("assigned", N, None, "new", "high", Y, N, N, N, N)]),
    ("internal note", reply(STAFF, TICKET, internal=True), [
        ("reply_added", Y, None, "new", "high", Y, N, N, N, N)]),
    ("first staff reply", reply(STAFF, TICKET), [
        ("reply_added", N, None, "new", "high", Y, Y, N, N, N),
        ("status_changed", N, True, "open", "high", Y, Y, N, N, N)]),
    ("ask the customer", change_status(STAFF, TICKET, "pending", "need logs"), [
        ("status_changed", N, False, "pending", "high", Y, Y, N, N, N)]),
    ("customer answers", reply(OWNER, TICKET), [
        ("reply_added", N, None, "pending", "high", Y, Y, N, N, N),
        ("status_changed", N, True, "open", "high", Y, Y, N, N, N)]),
    ("log time", log_time(STAFF, TICKET, minutes=30), [
        ("time_logged", Y, None, "open", "high", Y, Y, N, N, N)]),
    ("customer resolves", change_status(OWNER, TICKET, "resolved"), [
        ("status_changed", N, False, "resolved", "high", Y, Y, Y, N, N)]),
    ("customer writes again", reply(OWNER, TICKET), [
        ("reply_added", N, None, "resolved", "high", Y, Y, Y, N, N),
        ("status_changed", N, True, "open", "high", Y, Y, N, N, N)]),
    ("close", change_status(BOSS, TICKET, "closed"), [
        ("status_changed", N, False, "closed", "high", Y, Y, N, Y, N)]),
    ("delete", delete(BOSS, TICKET, reason="test ticket"), [
        ("deleted", N, None, "closed", "high", Y, Y, N, Y, Y)]),
    ("restore", restore(BOSS, TICKET), [
        ("restored", N, None, "closed", "high", Y, Y, N, Y, N)]),
]
CLASSES = {
    "created": contract_events.TicketCreated, "updated": contract_events.TicketUpdated,
    "status_changed": contract_events.TicketStatusChanged, "assigned": contract_events.TicketAssigned,
    "reply_added": contract_events.TicketReplyAdded, "time_logged": contract_events.TicketTimeLogged,
    "deleted": contract_events.TicketDeleted, "restored": contract_events.TicketRestored,
}


def test_the_scenario_touches_every_event_type() -> None:
    assert {row[0] for _, _, rows in SCENARIO for row in rows} == set(CLASSES)


async def play(batching: str) -> tuple[FakeUnitOfWork, list[Any]]:
    uow = FakeUnitOfWork()
    seed_user(uow, Role.AGENT, user_id=ASSIGNEE)
    commands = [command for _, command, _ in SCENARIO]
    if batching == "one batch":
        return uow, await run(uow, *commands)
    return uow, [o for command in commands for o in await run(uow, command)]


@pytest.fixture(params=["command by command", "one batch"])
async def played(request: pytest.FixtureRequest) -> tuple[FakeUnitOfWork, list[Any]]:
    return await play(request.param)


async def test_every_event_is_a_valid_contract_event_with_the_right_snapshot(
    played: tuple[FakeUnitOfWork, list[Any]],
) -> None:
    uow, outcomes = played
    bodies = uow.event_bodies(TICKET)
    expected = [(name, command, row) for name, command, rows in SCENARIO for row in rows]
    assert len(bodies) == len(expected)

    for version, (body, (name, command, row)) in enumerate(zip(bodies, expected, strict=True), start=1):
        kind, internal, automatic, status, priority, assigned, responded, resolved, closed, deleted = row
        event = parse_event(json.dumps(body))
        assert type(event) is CLASSES[kind], name
        assert set(body) == set(type(event).model_fields), name  # nothing missing, nothing extra
        assert (event.ticket_id, event.ticket_version, event.internal) == (TICKET, version, internal), name
        assert (event.event_id, event.causation_id) == (event.message_id, command.message_id), name
        assert (event.correlation_id, event.actor.user_id) == (command.correlation_id, command.actor.user_id)
        if automatic is not None:
            assert event.payload.automatic is automatic, name  # type: ignore[attr-defined]
        snap = event.ticket
        assert (snap.status.value, snap.priority.value, snap.deleted) == (status, priority, deleted), name
        assert (snap.assignee_id == ASSIGNEE, snap.first_response_at is not None) == (assigned, responded), name
        assert (snap.resolved_at is not None, snap.closed_at is not None) == (resolved, closed), name
        assert (snap.id, snap.customer_id) == (TICKET, OWNER.customer_id)


async def test_event_payloads_carry_what_happened(played: tuple[FakeUnitOfWork, list[Any]]) -> None:
    uow, _ = played
    events = [parse_event(json.dumps(b)) for b in uow.event_bodies(TICKET)]
    by_type: dict[str, list[Any]] = {}
    for e in events:
        by_type.setdefault(e.type.removeprefix("ticket."), []).append(e.payload)

    assert by_type["created"][0].tags == ["printer"]
    assert {k: (v.old, v.new) for k, v in by_type["updated"][0].changes.items()} == {
        "priority": ("normal", "high"), "tags": (["printer"], ["printer", "vip"])}
    assert (by_type["assigned"][0].from_assignee_id, by_type["assigned"][0].to_assignee_id) == (None, ASSIGNEE)
    replies = by_type["reply_added"]
    assert [(r.reply.internal, r.reply.author_role.value, r.first_response) for r in replies] == [
        (True, "agent", False), (False, "agent", True), (False, "customer", False), (False, "customer", False)]
    assert by_type["time_logged"][0].entry.minutes == by_type["time_logged"][0].time_spent_minutes == 30
    moves = [(m.from_status.value, m.to_status.value) for m in by_type["status_changed"]]
    assert moves == [("new", "open"), ("open", "pending"), ("pending", "open"), ("open", "resolved"),
                     ("resolved", "open"), ("open", "closed")]
    assert by_type["deleted"][0].reason == "test ticket"


async def test_every_result_is_a_valid_contract_result(played: tuple[FakeUnitOfWork, list[Any]]) -> None:
    uow, outcomes = played
    bodies = uow.event_bodies(TICKET)
    event_ids = iter(b["event_id"] for b in bodies)
    for (name, command, rows), outcome in zip(SCENARIO, outcomes, strict=True):
        result = parse_result(result_json(outcome.result))
        assert set(json.loads(result_json(outcome.result))) == set(CommandResult.model_fields)
        assert (result.status, result.command_id, result.causation_id) == (
            "accepted", command.message_id, command.message_id), name
        assert (result.command_type, result.ticket_id, result.actor.user_id) == (  # type: ignore[union-attr]
            command.command_type, TICKET, command.actor.user_id), name  # type: ignore[union-attr]
        assert [str(i) for i in result.event_ids] == [next(event_ids) for _ in rows], name
        assert uow.result(command.message_id) == json.loads(result_json(outcome.result))


async def test_rejections_are_valid_contract_results() -> None:
    uow = FakeUnitOfWork()
    undecodable_payload = Incoming(uuid.uuid4(), "ticket.update", uuid.uuid4(), None, actor=None, ticket_id=None,
                                   invalid="payload: an update must name at least one field")
    outcomes = await run(uow, log_time(customer(), uuid.uuid4()), change_status(agent(), TICKET, "new"),
                         undecodable_payload)
    results = [parse_result(result_json(o.result)) for o in outcomes]
    assert [(r.status, r.reason) for r in results] == [
        ("rejected", "not_found"), ("rejected", "not_found"), ("rejected", "validation_error")]
    assert all(r.message and r.event_ids == [] and r.ticket_version is None for r in results)
    assert results[2].actor is None
