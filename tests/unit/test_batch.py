"""``handle_batch``: idempotency, isolation of rejections and crashes, order, invalid input."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from ticket_contracts.commands import IngestEmail

from service.adapters.auth import ActorResolver
from service.domain.values import Role, Status
from service.entrypoints.decoding import decode_command
from service.adapters.serialization import result_json
from service.handlers import bus
from service.handlers.messages import Incoming

from .fakes import (
    FakeIntegrityError,
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
    reply,
    restore,
    run,
    seed_ticket,
    seed_user,
    system,
    update,
)


def result(outcome: Any) -> dict[str, Any]:
    return json.loads(result_json(outcome.result))


# ---- idempotency ---------------------------------------------------------------------------
@pytest.mark.parametrize("first_status", ["accepted", "rejected"])
async def test_a_processed_message_is_a_duplicate_with_its_original_result(first_status: str) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN)
    command = reply(agent(), ticket.id) if first_status == "accepted" else log_time(customer(), ticket.id)
    command.reply_to = "tickets.replies.first"
    [first] = await run(uow, command)
    events_before, replies_before = list(uow.events), dict(uow.replies)

    command.reply_to = None  # redelivered without the header: the stored reply_to is kept
    [again] = await run(uow, command)

    assert first.status == first_status
    assert (again.status, again.result, again.reply_to) == ("duplicate", first.result, "tickets.replies.first")
    assert uow.events == events_before and uow.replies == replies_before
    assert len(uow.inbox) == 1


async def test_the_same_message_twice_in_one_batch_has_one_effect() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.IN_PROGRESS)
    command = log_time(agent(), ticket.id, minutes=20)
    first, second = await run(uow, command, command)

    assert (first.status, second.status) == ("accepted", "duplicate")
    assert second.result == first.result
    assert uow.ticket(ticket.id).time_spent_minutes == 20
    assert len(uow.events) == 1 and len(uow.time_entries) == 1 and len(uow.inbox) == 1


# ---- isolation -----------------------------------------------------------------------------
async def test_a_rejection_in_the_middle_does_not_undo_the_others() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.IN_PROGRESS, version=1)
    staff = agent()
    outcomes = await run(
        uow,
        log_time(staff, ticket.id, minutes=10),
        change_status(staff, ticket.id, "on_hold"),  # no reason: rejected
        log_time(staff, ticket.id, minutes=5),
    )
    assert [(o.status, o.reason) for o in outcomes] == [
        ("accepted", None), ("rejected", "reason_required"), ("accepted", None)]
    after = uow.ticket(ticket.id)
    assert (after.status, after.version, after.time_spent_minutes) == (Status.IN_PROGRESS, 3, 15)
    assert [e["ticket_version"] for e in uow.event_bodies(ticket.id)] == [2, 3]
    assert {uow.inbox[o.message_id]["status"] for o in outcomes} == {"accepted", "rejected"}


def crash_after(monkeypatch: pytest.MonkeyPatch, doomed: Incoming) -> None:
    """Make the handler of ``doomed`` raise after it has done its work (on that command only)."""
    registration = bus.REGISTRY[doomed.command_type]
    real = registration.handler

    async def crashing(cmd: Any, ctx: Any, uow: Any) -> Any:
        ticket = await real(cmd, ctx, uow)
        if ctx.message_id == doomed.message_id:
            raise RuntimeError("a bug")
        return ticket

    monkeypatch.setitem(bus.REGISTRY, doomed.command_type, dataclasses.replace(registration, handler=crashing))


def mail_about(ticket: Any) -> Incoming:
    """The ticket's customer writes an email whose subject names the ticket: a reply on it."""
    return incoming(IngestEmail(actor=system(), payload={
        "email_message_id": f"<{uuid.uuid4()}@mail.example>", "from_address": "ann@example.com",
        "subject": f"Re: [{ticket.number}] Printer on fire", "body": "Still burning.",
        "received_at": "2026-01-05T10:00:00Z"}))


#: Per command type: the seeded ticket's status, and the command that crashes on it (it would be accepted).
CRASHING: dict[str, tuple[dict[str, Any], Callable[[Any, uuid.UUID], Incoming]]] = {
    "update": ({}, lambda t, a: update(agent(), t.id, title="Crashed", priority="urgent")),
    "change_status": ({}, lambda t, a: change_status(agent(), t.id, "resolved")),
    "assign": ({}, lambda t, a: assign(admin(), t.id, a)),
    "add_reply": ({"status": Status.NEW}, lambda t, a: reply(agent(), t.id)),
    "add_internal_note": ({}, lambda t, a: reply(agent(), t.id, internal=True)),
    "log_time": ({}, lambda t, a: log_time(agent(), t.id, minutes=60)),
    "delete": ({}, lambda t, a: delete(admin(), t.id)),
    "restore": ({"deleted": True}, lambda t, a: restore(admin(), t.id)),
    "ingest_email": ({"status": Status.PENDING}, lambda t, a: mail_about(t)),
}


@pytest.mark.parametrize(("command", "touched_before"), [
    pytest.param(command, touched_before, id=f"{command}:{'after-another-change' if touched_before else 'first'}")
    for command in CRASHING for touched_before in (False, True)
    if not (command == "restore" and touched_before)  # nothing but the restore itself changes a deleted ticket
])
async def test_every_handler_crash_is_undone(
    monkeypatch: pytest.MonkeyPatch, command: str, touched_before: bool,
) -> None:
    """Before, after or without other commands on its ticket, a crash leaves no trace in the batch."""
    uow = FakeUnitOfWork()
    seed, build = CRASHING[command]
    user = seed_user(uow, Role.CUSTOMER, email="ann@example.com")
    ticket = seed_ticket(uow, seed.get("status", Status.OPEN), deleted=seed.get("deleted", False),
                         customer_id=user.customer_id, first_response_at=None, version=1)
    seeded = dict(uow.tickets[ticket.id])
    doomed = build(ticket, seed_user(uow, Role.AGENT).user_id)
    crash_after(monkeypatch, doomed)
    touch = restore(admin(), ticket.id) if seed.get("deleted") else log_time(agent(), ticket.id, minutes=5)

    outcomes = await run(uow, *([touch, doomed] if touched_before else [doomed, touch]))

    assert [o.status for o in outcomes] == (["accepted", "failed"] if touched_before else ["failed", "accepted"])
    assert doomed.message_id not in uow.inbox  # not processed: a later redelivery handles it afresh
    touch_event = {"ticket.log_time": "ticket.time_logged", "ticket.restore": "ticket.restored"}[touch.command_type]
    assert [(e["type"], e["ticket_version"], e["causation_id"]) for e in uow.event_bodies()] == [
        (touch_event, 2, str(touch.message_id))]  # only the other command's event, with no gap
    assert uow.replies == {} and uow.emails == {} and len(uow.tickets) == 1
    after = uow.tickets[ticket.id]
    changed = {k for k in after if after[k] != seeded[k]}
    assert changed == {"version", "updated_at", "deleted_at" if seed.get("deleted") else "time_spent_minutes"}


async def test_a_crashing_command_is_undone_and_the_others_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.NEW, version=1, first_response_at=None)
    staff = agent()
    crashing = reply(staff, ticket.id, body="boom")  # would be the first response and open the ticket
    crash_after(monkeypatch, crashing)

    outcomes = await run(uow, log_time(staff, ticket.id), crashing, reply(staff, ticket.id, body="later"))

    assert [o.status for o in outcomes] == ["accepted", "failed", "accepted"]
    failed = outcomes[1]
    assert (failed.result, type(failed.error), failed.reason) == (None, RuntimeError, None)
    assert crashing.message_id not in uow.inbox  # not processed: a later redelivery handles it afresh
    assert [r.body for r in uow.replies.values()] == ["later"]
    history = uow.event_bodies(ticket.id)
    assert [(e["type"], e["ticket_version"]) for e in history] == [
        ("ticket.time_logged", 2), ("ticket.reply_added", 3), ("ticket.status_changed", 4)]
    assert history[1]["payload"]["reply"]["body"] == "later"
    assert history[1]["payload"]["first_response"] is True  # the crashed reply left no trace
    after = uow.ticket(ticket.id)
    assert (after.version, after.status, after.time_spent_minutes) == (4, Status.OPEN, 15)
    assert result(outcomes[2])["ticket_version"] == 4


async def test_a_crash_as_the_last_command_on_a_ticket_is_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing after the crash touches the ticket again, so only the undo keeps the crash out."""
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN, version=1)
    doomed = reply(agent(), ticket.id)
    crash_after(monkeypatch, doomed)

    outcomes = await run(uow, log_time(agent(), ticket.id, minutes=5), doomed)

    assert [o.status for o in outcomes] == ["accepted", "failed"]
    assert uow.replies == {}
    after = uow.ticket(ticket.id)
    assert (after.version, after.time_spent_minutes) == (2, 5)
    assert [e["ticket_version"] for e in uow.event_bodies(ticket.id)] == [2]


async def test_a_crash_on_a_ticket_first_touched_by_it_is_undone(monkeypatch: pytest.MonkeyPatch) -> None:
    uow = FakeUnitOfWork()
    crashing_ticket = seed_ticket(uow, Status.OPEN, version=7)
    other = seed_ticket(uow, Status.OPEN)
    doomed = reply(agent(), crashing_ticket.id)
    crash_after(monkeypatch, doomed)

    outcomes = await run(uow, doomed, reply(agent(), other.id),
                         log_time(agent(), crashing_ticket.id, minutes=9))

    assert [o.status for o in outcomes] == ["failed", "accepted", "accepted"]
    after = uow.ticket(crashing_ticket.id)
    assert (after.version, after.time_spent_minutes) == (8, 9)  # the log_time saw the state before the crash
    assert [e["type"] for e in uow.event_bodies(crashing_ticket.id)] == ["ticket.time_logged"]


async def test_a_crashing_create_leaves_no_ticket(monkeypatch: pytest.MonkeyPatch) -> None:
    uow = FakeUnitOfWork()
    registration = bus.REGISTRY["ticket.create"]
    real = registration.handler

    async def crashing(cmd: Any, ctx: Any, uow_: Any) -> Any:
        await real(cmd, ctx, uow_)
        raise RuntimeError("a bug")

    monkeypatch.setitem(bus.REGISTRY, "ticket.create", dataclasses.replace(registration, handler=crashing))
    doomed = create(customer())
    outcome, follow_up = await run(uow, doomed, reply(agent(), doomed.ticket_id))  # type: ignore[arg-type]
    assert (outcome.status, follow_up.reason) == ("failed", "not_found")  # gone within the batch, too
    assert uow.tickets == {} and uow.events == [] and list(uow.inbox) == [follow_up.message_id]

    monkeypatch.undo()  # the bug is fixed; the command is sent again and now works
    [retried] = await run(uow, doomed)
    assert retried.status == "accepted" and doomed.ticket_id in uow.tickets


# ---- order ---------------------------------------------------------------------------------
async def test_commands_for_one_ticket_apply_in_batch_order() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN, version=1)
    staff, owner = agent(), customer()
    outcomes = await run(
        uow,
        change_status(staff, ticket.id, "pending", "need logs"),  # 2
        reply(owner, ticket.id),                                  # 3, and back to open: 4
        change_status(staff, ticket.id, "closed"),                # 5
        reply(owner, ticket.id),                                  # too late: closed
    )
    assert [o.reason for o in outcomes] == [None, None, None, "ticket_closed"]
    history = uow.event_bodies(ticket.id)
    assert [(e["type"], e["ticket"]["status"]) for e in history] == [
        ("ticket.status_changed", "pending"), ("ticket.reply_added", "pending"),
        ("ticket.status_changed", "open"), ("ticket.status_changed", "closed")]
    assert [e["ticket_version"] for e in history] == [2, 3, 4, 5]


@pytest.mark.parametrize(("order", "reasons"), [
    (("reply", "close"), [None, None]),
    (("close", "reply"), [None, "ticket_closed"]),
], ids=["reply-then-close", "close-then-reply"])
async def test_a_later_command_sees_the_earlier_ones(order: tuple[str, str], reasons: list[str | None]) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN)
    commands = {"reply": reply(customer(), ticket.id), "close": change_status(agent(), ticket.id, "closed")}
    outcomes = await run(uow, *(commands[name] for name in order))
    assert [o.reason for o in outcomes] == reasons


# ---- invalid input -------------------------------------------------------------------------
async def test_an_invalid_item_gets_a_recorded_rejection() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN)
    invalid = Incoming(
        message_id=uuid.uuid4(), command_type="ticket.add_reply", correlation_id=uuid.uuid4(),
        reply_to="tickets.replies.x", actor=None, ticket_id=ticket.id, invalid="payload.body: too short",
    )
    valid = log_time(agent(), ticket.id)
    outcomes = await run(uow, invalid, valid)

    assert [(o.status, o.reason) for o in outcomes] == [("rejected", "validation_error"), ("accepted", None)]
    stored = uow.result(invalid.message_id)
    assert stored == result(outcomes[0])
    assert (stored["reason"], stored["message"], stored["ticket_id"]) == (
        "validation_error", "payload.body: too short", str(ticket.id))
    assert (stored["command_type"], stored["actor"]) == ("ticket.add_reply", None)
    assert uow.inbox[invalid.message_id]["reply_to"] == "tickets.replies.x"
    [again] = await run(uow, invalid)
    assert (again.status, again.result) == ("duplicate", outcomes[0].result)


async def test_a_decoded_but_invalid_command_is_rejected_with_its_actor() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN)
    sender = agent()
    raw = {"message_id": str(uuid.uuid4()), "type": "ticket.log_time", "actor": sender.model_dump(mode="json"),
           "payload": {"ticket_id": str(ticket.id), "entry_id": str(uuid.uuid4()), "minutes": 0}}
    record = SimpleNamespace(value=json.dumps(raw).encode(), headers=[("reply_to", b"tickets.replies.y")])
    item = decode_command(record, ActorResolver("trust"), max_bytes=1_000_000)
    assert isinstance(item, Incoming) and item.invalid

    [outcome] = await run(uow, item)
    stored = uow.result(raw["message_id"])
    assert (outcome.status, stored["reason"], stored["actor"]["user_id"]) == (
        "rejected", "validation_error", str(sender.user_id))
    assert "minutes" in stored["message"]
    assert uow.events == [] and uow.ticket(ticket.id).time_spent_minutes == 0


# ---- atomicity -----------------------------------------------------------------------------
async def test_a_batch_that_cannot_commit_leaves_nothing() -> None:
    """Two replies with one reply_id: the database refuses the batch and none of it is written."""
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN)
    first = reply(agent(), ticket.id)
    clash = reply(agent(), ticket.id, reply_id=first.command.payload.reply_id)  # type: ignore[union-attr]
    with pytest.raises(FakeIntegrityError):
        await run(uow, log_time(agent(), ticket.id), first, clash)
    assert uow.events == [] and uow.inbox == {} and uow.replies == {} and uow.commits == 0
    assert uow.ticket(ticket.id).version == 1


async def test_the_fake_shares_nothing_uncommitted() -> None:
    """The fake's own promise, which every test above relies on."""
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN, tags=["vip"])
    async with uow:
        loaded = await uow.load(ticket.id)
        assert loaded is not None
        loaded.title, loaded.version = "changed in memory", 99
        loaded.tags.append("leak")
    copy = uow.ticket(ticket.id)
    copy.tags.append("leak")
    assert uow.ticket(ticket.id).title == ticket.title and uow.ticket(ticket.id).version == 1
    assert uow.ticket(ticket.id).tags == ["vip"]
