"""The ticket's own rules (SPEC §4–§7), each through ``handle_batch`` on the fake unit of work:
first response, automatic moves, versions, expected_version, assignment, time, soft delete,
tags, update no-ops and creation."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from service.adapters.serialization import result_json
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
    log_time,
    reply,
    restore,
    run,
    run_one,
    seed_ticket,
    seed_user,
    system,
    update,
)

STAFF = pytest.mark.parametrize("staff", [agent, admin], ids=["agent", "admin"])
OPEN_STATUSES = [s for s in Status if s is not Status.CLOSED]


def events(uow: FakeUnitOfWork, ticket_id: uuid.UUID, type_: str | None = None) -> list[dict[str, Any]]:
    return [e for e in uow.event_bodies(ticket_id) if type_ in (None, e["type"])]


def json_of(outcome: Any) -> dict[str, Any]:
    return json.loads(result_json(outcome.result))


async def new_ticket(uow: FakeUnitOfWork, **payload: Any) -> uuid.UUID:
    result = await run_one(uow, create(customer(), **payload))
    assert result["status"] == "accepted", result
    return uuid.UUID(result["ticket_id"])


# ---- first response ------------------------------------------------------------------------
@STAFF
async def test_first_public_staff_reply_is_the_first_response(staff: Any) -> None:
    uow = FakeUnitOfWork()
    ticket_id = await new_ticket(uow)
    await run_one(uow, reply(customer(), ticket_id))               # customer replies never count
    await run_one(uow, reply(staff(), ticket_id, internal=True))   # nor do internal notes
    assert uow.ticket(ticket_id).first_response_at is None

    await run_one(uow, reply(staff(), ticket_id))
    first = uow.ticket(ticket_id).first_response_at
    await run_one(uow, reply(agent(), ticket_id))                  # set once

    replies = events(uow, ticket_id, "ticket.reply_added")
    assert [e["payload"]["first_response"] for e in replies] == [False, False, True, False]
    assert first is not None and uow.ticket(ticket_id).first_response_at == first
    assert replies[2]["occurred_at"] == first.isoformat()
    assert replies[2]["ticket"]["first_response_at"] == first.isoformat()


@pytest.mark.parametrize("status", OPEN_STATUSES, ids=str)
async def test_first_response_counts_in_any_open_status(status: Status) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, status, first_response_at=None)
    await run_one(uow, reply(agent(), ticket.id))
    assert uow.ticket(ticket.id).first_response_at is not None


# ---- automatic moves -----------------------------------------------------------------------
@pytest.mark.parametrize("status", [Status.PENDING, Status.RESOLVED], ids=str)
async def test_customer_public_reply_reopens_pending_and_resolved(status: Status) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, status, version=2)
    result = await run_one(uow, reply(customer(), ticket.id))

    added, moved = events(uow, ticket.id)
    assert (added["type"], added["ticket_version"]) == ("ticket.reply_added", 3)
    assert (moved["type"], moved["ticket_version"]) == ("ticket.status_changed", 4)
    assert moved["payload"]["from_status"] == status.value
    assert (moved["payload"]["to_status"], moved["payload"]["automatic"]) == ("open", True)
    assert result["event_ids"] == [added["event_id"], moved["event_id"]] and result["ticket_version"] == 4
    after = uow.ticket(ticket.id)
    assert (after.status, after.resolved_at) == (Status.OPEN, None)


@pytest.mark.parametrize("status", [Status.NEW, Status.OPEN, Status.IN_PROGRESS, Status.ON_HOLD], ids=str)
async def test_customer_reply_leaves_other_statuses_alone(status: Status) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, status)
    await run_one(uow, reply(customer(), ticket.id))
    assert uow.ticket(ticket.id).status is status
    assert [e["type"] for e in events(uow, ticket.id)] == ["ticket.reply_added"]


@STAFF
async def test_first_public_staff_reply_opens_a_new_ticket(staff: Any) -> None:
    uow = FakeUnitOfWork()
    ticket_id = await new_ticket(uow)
    await run_one(uow, reply(staff(), ticket_id))
    _, added, moved = events(uow, ticket_id)
    assert added["payload"]["first_response"] is True
    assert (moved["type"], moved["payload"]["from_status"], moved["payload"]["to_status"]) == (
        "ticket.status_changed", "new", "open")
    assert moved["payload"]["automatic"] is True
    assert uow.ticket(ticket_id).status is Status.OPEN


@pytest.mark.parametrize("status", [s for s in OPEN_STATUSES if s is not Status.NEW], ids=str)
async def test_staff_reply_moves_nothing_but_new(status: Status) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, status)
    await run_one(uow, reply(agent(), ticket.id))
    assert uow.ticket(ticket.id).status is status


@pytest.mark.parametrize("status", [Status.NEW, Status.PENDING, Status.RESOLVED], ids=str)
async def test_internal_notes_never_move(status: Status) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, status, first_response_at=None)
    await run_one(uow, reply(agent(), ticket.id, internal=True))
    assert uow.ticket(ticket.id).status is status
    [note] = events(uow, ticket.id)
    assert (note["type"], note["internal"], note["payload"]["first_response"]) == ("ticket.reply_added", True, False)


async def test_manual_status_change_is_not_automatic() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN)
    await run_one(uow, change_status(agent(), ticket.id, "pending", "asked for logs"))
    [moved] = events(uow, ticket.id)
    assert moved["payload"] == {"from_status": "open", "to_status": "pending", "reason": "asked for logs",
                                "automatic": False}
    assert uow.ticket(ticket.id).status_reason == "asked for logs"


# ---- versions ------------------------------------------------------------------------------
async def test_versions_run_one_two_three_without_gaps() -> None:
    uow = FakeUnitOfWork()
    ticket_id, other_id = uuid.uuid4(), uuid.uuid4()
    staff = agent()
    results = [
        await run_one(uow, create(customer(), ticket_id)),                       # 1
        *[json_of(o) for o in await run(
            uow,
            create(customer(CUSTOMER_B), other_id),                             # other ticket: 1
            reply(staff, ticket_id),                                            # 2, 3 (auto open)
            log_time(customer(), ticket_id),                                    # rejected: no version
            reply(staff, other_id),                                             # other: 2, 3
            update(staff, ticket_id, priority="normal"),                        # no-op: no version
            update(staff, ticket_id, priority="high"),                          # 4
        )],
        await run_one(uow, log_time(staff, ticket_id)),                          # 5
        await run_one(uow, change_status(customer(), ticket_id, "resolved")),    # 6
    ]
    for tid, last in ((ticket_id, 6), (other_id, 3)):
        history = events(uow, tid)
        assert [e["ticket_version"] for e in history] == list(range(1, last + 1))
        assert uow.ticket(tid).version == last
    assert [r["ticket_version"] for r in results] == [1, 1, 3, None, 3, 3, 4, 5, 6]
    all_ids = [e["event_id"] for e in uow.event_bodies()]
    assert [i for r in results for i in r["event_ids"]] == all_ids  # each result names its events, in order


# ---- expected_version ----------------------------------------------------------------------
MUTATIONS = {
    "update": lambda t, v: update(agent(), t, title="New title", expected_version=v),
    "change_status": lambda t, v: change_status(agent(), t, "pending", expected_version=v),
    "assign": lambda t, v: assign(agent(), t, None, expected_version=v),  # seeded with an assignee
    "add_reply": lambda t, v: reply(agent(), t, expected_version=v),
    "log_time": lambda t, v: log_time(agent(), t, expected_version=v),
    "delete": lambda t, v: delete(admin(), t, expected_version=v),
    "restore": lambda t, v: restore(admin(), t, expected_version=v),
}


@pytest.mark.parametrize("command", MUTATIONS)
@pytest.mark.parametrize("expected_version", [4, 6, 1], ids=["stale", "ahead", "first"])
async def test_expected_version_mismatch_is_a_conflict(command: str, expected_version: int) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN, version=5, deleted=command == "restore", assignee_id=uuid.uuid4())
    result = await run_one(uow, MUTATIONS[command](ticket.id, expected_version))
    assert (result["status"], result["reason"]) == ("rejected", "conflict")
    assert uow.ticket(ticket.id).version == 5 and uow.events == []


@pytest.mark.parametrize("command", MUTATIONS)
async def test_expected_version_match_is_accepted(command: str) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN, version=5, deleted=command == "restore", assignee_id=uuid.uuid4())
    result = await run_one(uow, MUTATIONS[command](ticket.id, 5))
    assert (result["status"], result["ticket_version"]) == ("accepted", 6)


async def test_no_op_update_still_checks_the_version() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN, version=5)
    result = await run_one(uow, update(agent(), ticket.id, title=ticket.title, expected_version=4))
    assert result["reason"] == "conflict"


# ---- assignment ----------------------------------------------------------------------------
@pytest.mark.parametrize(("who", "want"), [
    ("active agent", "accepted"),
    ("active admin", "accepted"),
    ("unknown user", "invalid_assignee"),
    ("inactive agent", "invalid_assignee"),
    ("inactive admin", "invalid_assignee"),
    ("customer user", "invalid_assignee"),
    ("service account", "invalid_assignee"),
])
async def test_assignee_must_be_an_active_agent_or_admin(who: str, want: str) -> None:
    uow = FakeUnitOfWork()
    users = {
        "active agent": lambda: seed_user(uow, Role.AGENT).user_id,
        "active admin": lambda: seed_user(uow, Role.ADMIN).user_id,
        "unknown user": uuid.uuid4,
        "inactive agent": lambda: seed_user(uow, Role.AGENT, active=False).user_id,
        "inactive admin": lambda: seed_user(uow, Role.ADMIN, active=False).user_id,
        "customer user": lambda: seed_user(uow, Role.CUSTOMER, customer_id=CUSTOMER_A).user_id,
        "service account": lambda: seed_user(uow, Role.SYSTEM).user_id,
    }
    assignee_id = users[who]()
    ticket = seed_ticket(uow, Status.OPEN)
    result = await run_one(uow, assign(admin(), ticket.id, assignee_id))
    if want == "accepted":
        assert result["status"] == "accepted"
        [event] = events(uow, ticket.id)
        assert event["payload"] == {"from_assignee_id": None, "to_assignee_id": str(assignee_id)}
        assert event["ticket"]["assignee_id"] == str(assignee_id)
        assert uow.ticket(ticket.id).assignee_id == assignee_id
    else:
        assert (result["status"], result["reason"]) == ("rejected", want)
        assert uow.ticket(ticket.id).assignee_id is None


async def test_unassign_with_null() -> None:
    uow = FakeUnitOfWork()
    previous = seed_user(uow, Role.AGENT).user_id
    ticket = seed_ticket(uow, Status.OPEN, assignee_id=previous)
    result = await run_one(uow, assign(agent(), ticket.id, None))
    assert result["status"] == "accepted"
    assert events(uow, ticket.id)[0]["payload"] == {"from_assignee_id": str(previous), "to_assignee_id": None}
    assert uow.ticket(ticket.id).assignee_id is None


@pytest.mark.parametrize("current", ["nobody", "the same agent"])
async def test_assigning_the_current_assignee_is_a_no_op(current: str) -> None:
    uow = FakeUnitOfWork()
    same = seed_user(uow, Role.AGENT).user_id if current != "nobody" else None
    ticket = seed_ticket(uow, Status.OPEN, assignee_id=same, version=2)
    result = await run_one(uow, assign(agent(), ticket.id, same))
    assert (result["status"], result["event_ids"], result["ticket_version"]) == ("accepted", [], 2)
    assert uow.events == []


# ---- time entries --------------------------------------------------------------------------
async def test_time_entries_add_up() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.IN_PROGRESS)
    staff = agent()
    await run(uow, log_time(staff, ticket.id, minutes=30, note="triage"), log_time(admin(), ticket.id, minutes=45))
    await run_one(uow, log_time(staff, ticket.id, minutes=1440))

    assert uow.ticket(ticket.id).time_spent_minutes == 30 + 45 + 1440
    logged = events(uow, ticket.id)
    assert [e["payload"]["time_spent_minutes"] for e in logged] == [30, 75, 1515]
    assert [e["payload"]["entry"]["minutes"] for e in logged] == [30, 45, 1440]
    assert all(e["type"] == "ticket.time_logged" and e["internal"] for e in logged)
    entries = sorted(uow.time_entries.values(), key=lambda e: e.minutes)
    assert [(e.minutes, e.note, e.user_id == staff.user_id) for e in entries] == [
        (30, "triage", True), (45, None, False), (1440, None, True)]


# ---- soft delete and restore ---------------------------------------------------------------
async def test_soft_delete_and_restore() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN, version=2)
    boss = admin()

    deleted = await run_one(uow, delete(boss, ticket.id, reason="spam"))
    assert deleted["status"] == "accepted" and uow.ticket(ticket.id).deleted_at is not None
    for hidden in (reply(boss, ticket.id), update(boss, ticket.id, title="x"), delete(boss, ticket.id)):
        assert (await run_one(uow, hidden))["reason"] == "not_found"

    restored = await run_one(uow, restore(boss, ticket.id))
    assert restored["status"] == "accepted" and uow.ticket(ticket.id).deleted_at is None
    assert (await run_one(uow, reply(customer(), ticket.id)))["status"] == "accepted"

    history = events(uow, ticket.id)
    assert [(e["type"], e["ticket_version"], e["ticket"]["deleted"]) for e in history] == [
        ("ticket.deleted", 3, True), ("ticket.restored", 4, False), ("ticket.reply_added", 5, False)]
    assert history[0]["payload"] == {"reason": "spam"}
    assert uow.ticket(ticket.id).status is Status.OPEN  # delete and restore leave the status alone


async def test_restoring_a_live_ticket_is_an_invalid_transition() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN)
    assert (await run_one(uow, restore(admin(), ticket.id)))["reason"] == "invalid_transition"


# ---- tags and update no-ops ----------------------------------------------------------------
async def test_tags_are_normalised() -> None:
    uow = FakeUnitOfWork()
    ticket_id = await new_ticket(uow, tags=["vip", "billing", "vip"])
    assert uow.ticket(ticket_id).tags == ["billing", "vip"]
    assert events(uow, ticket_id)[0]["payload"]["tags"] == ["billing", "vip"]

    same = await run_one(uow, update(agent(), ticket_id, tags=["vip", "billing"]))
    assert (same["status"], same["event_ids"]) == ("accepted", [])

    await run_one(uow, update(agent(), ticket_id, tags=["printer", "billing", "printer"]))
    assert uow.ticket(ticket_id).tags == ["billing", "printer"]
    assert events(uow, ticket_id)[-1]["payload"]["changes"] == {
        "tags": {"old": ["billing", "vip"], "new": ["billing", "printer"]}}


async def test_update_with_current_values_is_accepted_without_an_event() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN, version=3)
    result = await run_one(uow, update(agent(), ticket.id, title=ticket.title, description=ticket.description,
                                       priority=ticket.priority, category_id=None, tags=[]))
    assert (result["status"], result["event_ids"], result["ticket_version"]) == ("accepted", [], 3)
    assert uow.events == [] and uow.ticket(ticket.id).version == 3


async def test_update_records_only_what_changed() -> None:
    uow = FakeUnitOfWork()
    category = uuid.uuid4()
    ticket = seed_ticket(uow, Status.OPEN, category_id=category)
    await run_one(uow, update(agent(), ticket.id, title=ticket.title, description="Now smoking.",
                              category_id=None))
    [event] = events(uow, ticket.id)
    assert event["payload"]["changes"] == {
        "description": {"old": "It is on fire.", "new": "Now smoking."},
        "category_id": {"old": str(category), "new": None},
    }
    after = uow.ticket(ticket.id)
    assert (after.description, after.category_id, after.title) == ("Now smoking.", None, ticket.title)


@pytest.mark.parametrize(("fields", "want"), [
    ({"title": "Still broken"}, "accepted"),
    ({"description": "More detail."}, "accepted"),
    ({"priority": "urgent"}, "forbidden"),
    ({"tags": ["vip"]}, "forbidden"),
    ({"category_id": None}, "forbidden"),
    ({"title": "Still broken", "priority": "urgent"}, "forbidden"),
], ids=["title", "description", "priority", "tags", "category", "title+priority"])
async def test_customers_edit_only_title_and_description(fields: dict[str, Any], want: str) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN)
    result = await run_one(uow, update(customer(), ticket.id, **fields))
    assert (result["reason"] or result["status"]) == want


# ---- creation ------------------------------------------------------------------------------
async def test_create_opens_a_new_ticket() -> None:
    uow = FakeUnitOfWork()
    author = customer()
    ticket_id = uuid.uuid4()
    result = await run_one(uow, create(author, ticket_id, priority="high", channel="web"))
    ticket = uow.ticket(ticket_id)
    assert (result["status"], result["ticket_id"], result["ticket_version"]) == ("accepted", str(ticket_id), 1)
    assert (ticket.status, ticket.version, ticket.customer_id, ticket.created_by) == (
        Status.NEW, 1, CUSTOMER_A, author.user_id)
    assert (ticket.priority, ticket.channel, ticket.first_response_at, ticket.time_spent_minutes) == (
        "high", "web", None, 0)
    [event] = events(uow, ticket_id)
    assert (event["type"], event["payload"]["number"], event["payload"]["status"]) == (
        "ticket.created", ticket.number, "new")


async def test_ticket_numbers_are_unique_and_increasing() -> None:
    uow = FakeUnitOfWork()
    first = [await new_ticket(uow) for _ in range(2)]
    batch = await run(uow, create(agent(), customer_id=CUSTOMER_B), create(customer()))
    ids = first + [uuid.UUID(json_of(o)["ticket_id"]) for o in batch]
    numbers = [uow.ticket(i).number for i in ids]
    assert numbers == sorted(set(numbers)) and all(n.startswith("TKT-") and len(n) == 10 for n in numbers)


async def test_duplicate_ticket_id_with_another_message_id_is_a_conflict() -> None:
    uow = FakeUnitOfWork()
    ticket_id = await new_ticket(uow, title="The original")
    later = await run_one(uow, create(customer(), ticket_id, title="An impostor"))
    same_batch = await run(uow, create(system(), (twin := uuid.uuid4()), customer_id=CUSTOMER_A),
                           create(agent(), twin, customer_id=CUSTOMER_B))

    assert (later["status"], later["reason"]) == ("rejected", "conflict")
    assert [o.reason for o in same_batch] == [None, "conflict"]
    assert uow.ticket(ticket_id).title == "The original"
    assert uow.ticket(twin).customer_id == CUSTOMER_A
    assert len(uow.events) == 2


async def test_another_customers_existing_ticket_id_is_a_conflict_too() -> None:
    """The id exists; ids are client-made UUIDs, so saying so reveals nothing guessable."""
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN, customer_id=CUSTOMER_B)
    assert (await run_one(uow, create(customer(CUSTOMER_A), ticket.id)))["reason"] == "conflict"
