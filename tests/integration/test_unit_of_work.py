"""The unit of work on real PostgreSQL: one batch is one transaction — all of it or none of it —
redelivery changes nothing, and concurrent work on one ticket serializes through its row lock."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from ticket_contracts import (
    Actor,
    AddReply,
    AssignTicket,
    CreateTicket,
    IngestEmail,
    LogTime,
    MergeTicket,
    SetFollowers,
    UpdateTicket,
    new_id,
    parse_event,
    parse_result,
)

from service.adapters import tables as t
from service.adapters.retry import is_transient
from service.adapters.unit_of_work import NOTIFY_CHANNEL, SqlUnitOfWork, array_literal
from service.app import _asyncpg_dsn
from service.adapters.serialization import result_json
from service.entrypoints.commands import message_bus
from service.handlers.bus import handle_batch
from service.handlers.messages import Outcome
from service.metrics import Metrics
from service.settings import load_settings
from tests.support.waiting import eventually

from .uow_helpers import (
    HeldUnitOfWork,
    InjectedFailure,
    add_user,
    count,
    counts,
    customer,
    incoming,
    lock_waiters,
    migrated_engine,
    staff,
    versions,
)

REPLY_TO = "tickets.replies.test-client"


@pytest.fixture
async def engine(database_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(database_server_url) as engine:
        yield engine


async def _create(engine: AsyncEngine, ticket_id: uuid.UUID, actor: Actor | None = None) -> Outcome:
    payload = {"ticket_id": ticket_id, "title": "T", "description": "D"}
    command = CreateTicket(actor=actor or customer(), payload=payload)
    [outcome] = await handle_batch([incoming(command)], SqlUnitOfWork(engine))
    assert outcome.status == "accepted"
    return outcome


def _log_time(ticket_id: uuid.UUID, minutes: int) -> LogTime:
    return LogTime(actor=staff(), payload={"ticket_id": ticket_id, "entry_id": uuid.uuid4(), "minutes": minutes})


async def _ticket(engine: AsyncEngine, ticket_id: uuid.UUID) -> dict:
    async with engine.connect() as conn:
        return dict((await conn.execute(select(t.tickets).where(t.tickets.c.id == ticket_id))).one()._mapping)


# ---- one batch, one transaction ---------------------------------------------------------------
async def test_a_batch_commits_tickets_children_history_inbox_and_emails_together(engine: AsyncEngine) -> None:
    agent_id = await add_user(engine, "agent")
    sender_customer = uuid.uuid4()
    await add_user(engine, "customer", email="ann@example.test", customer_id=sender_customer)
    agent, ticket_id, reply_id, entry_id = staff(user_id=agent_id), new_id(), uuid.uuid4(), uuid.uuid4()
    commands = [
        CreateTicket(actor=customer(), payload={"ticket_id": ticket_id, "title": "Printer", "description": "On fire"}),
        AddReply(actor=agent, payload={"ticket_id": ticket_id, "reply_id": reply_id, "body": "On it"}),
        LogTime(actor=agent, payload={"ticket_id": ticket_id, "entry_id": entry_id, "minutes": 25, "note": "call"}),
        AssignTicket(actor=agent, payload={"ticket_id": ticket_id, "assignee_id": agent_id}),
        IngestEmail(actor=Actor(user_id=uuid.uuid4(), role="system"), payload={
            "email_message_id": "<first@mail.test>", "from_address": "Ann@example.test", "subject": "Help",
            "body": "It broke", "received_at": datetime.now(UTC)}),
    ]
    listener = await asyncpg.connect(_asyncpg_dsn(engine.url.render_as_string(hide_password=False)))
    notified = asyncio.Event()
    await listener.add_listener(NOTIFY_CHANNEL, lambda *_: notified.set())
    try:
        outcomes = await handle_batch([incoming(c, reply_to=REPLY_TO) for c in commands], SqlUnitOfWork(engine))
        await asyncio.wait_for(notified.wait(), 10)  # the relay is woken by the commit
    finally:
        await listener.close()

    assert [o.status for o in outcomes] == ["accepted"] * 5
    results = [parse_result(result_json(o.result)) for o in outcomes]
    assert [r.ticket_version for r in results[:4]] == [1, 3, 4, 5]  # the staff reply also opened the ticket
    email_ticket_id = results[4].ticket_id
    assert email_ticket_id not in (None, ticket_id)

    ticket = await _ticket(engine, ticket_id)
    assert (ticket["version"], ticket["status"], ticket["time_spent_minutes"], ticket["assignee_id"]) == (
        5, "open", 25, agent_id)
    assert ticket["first_response_at"] is not None and ticket["number"].startswith("TKT-")
    async with engine.connect() as conn:
        [reply] = (await conn.execute(select(t.replies))).all()
        [entry] = (await conn.execute(select(t.time_entries))).all()
        history = (await conn.execute(
            select(t.ticket_events).where(t.ticket_events.c.ticket_id == ticket_id).order_by(t.ticket_events.c.seq)
        )).all()
        inbox = {r.message_id: r for r in await conn.execute(select(t.processed_commands))}
        [email] = (await conn.execute(select(t.email_messages))).all()
    assert (reply.id, reply.ticket_id, reply.author_id, reply.body, reply.internal) == (
        reply_id, ticket_id, agent_id, "On it", False)
    assert (entry.id, entry.ticket_id, entry.minutes, entry.note) == (entry_id, ticket_id, 25, "call")

    assert [e.ticket_version for e in history] == [1, 2, 3, 4, 5]
    assert [e.type for e in history] == ["ticket.created", "ticket.reply_added", "ticket.status_changed",
                                         "ticket.time_logged", "ticket.assigned"]
    causes = [commands[0]] + [commands[1]] * 2 + [commands[2], commands[3]]
    for row, command in zip(history, causes, strict=True):
        body = parse_event(row.body)  # the stored body is the published contract message
        assert (body.event_id, body.ticket_id, body.ticket_version, body.type) == (
            row.event_id, ticket_id, row.ticket_version, row.type)
        assert body.causation_id == command.message_id and row.published_at is None
    assert [e.event_id for e in history] == [*results[0].event_ids, *results[1].event_ids,
                                             *results[2].event_ids, *results[3].event_ids]
    assert await versions(engine, email_ticket_id) == [1]

    assert set(inbox) == {c.message_id for c in commands}
    for command, outcome in zip(commands, outcomes, strict=True):
        row = inbox[command.message_id]
        assert (row.result, row.status, row.command_type, row.reply_to) == (
            result_json(outcome.result), "accepted", command.type, REPLY_TO)
        assert row.result_published_at is None
    assert (email.message_id, email.ticket_id, email.command_id) == (
        "<first@mail.test>", email_ticket_id, commands[4].message_id)


async def _refuse_inserts_into(engine: AsyncEngine, table: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE OR REPLACE FUNCTION refuse_insert() RETURNS trigger LANGUAGE plpgsql "
                                "AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$"))
        await conn.execute(text(f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
                                "FOR EACH STATEMENT EXECUTE FUNCTION refuse_insert()"))


async def _allow_inserts_into(engine: AsyncEngine, table: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP TRIGGER refuse ON {table}"))


@pytest.mark.parametrize("fails_at", ["ticket_events", "processed_commands", "email_messages", "COMMIT"])
async def test_a_failure_during_commit_leaves_nothing_behind(engine: AsyncEngine, fails_at: str) -> None:
    existing = new_id()
    await _create(engine, existing)
    await add_user(engine, "customer", email="bob@example.test", customer_id=uuid.uuid4())
    before, ticket_before = await counts(engine), await _ticket(engine, existing)
    agent, new_ticket = staff(), new_id()
    commands = [
        UpdateTicket(actor=agent, payload={"ticket_id": existing, "title": "Renamed"}),
        AddReply(actor=agent, payload={"ticket_id": existing, "reply_id": uuid.uuid4(), "body": "Hello"}),
        LogTime(actor=agent, payload={"ticket_id": existing, "entry_id": uuid.uuid4(), "minutes": 5}),
        CreateTicket(actor=customer(), payload={"ticket_id": new_ticket, "title": "New", "description": "D"}),
        IngestEmail(actor=Actor(user_id=uuid.uuid4(), role="system"), payload={
            "email_message_id": "<fail@mail.test>", "from_address": "bob@example.test", "subject": "Hi",
            "body": "Body", "received_at": datetime.now(UTC)}),
    ]

    if fails_at == "COMMIT":  # every INSERT and UPDATE ran; the COMMIT itself fails
        uow = HeldUnitOfWork(engine)
        uow.release(fail=True)
        with pytest.raises(InjectedFailure):
            await handle_batch([incoming(c) for c in commands], uow)
    else:  # the database refuses one of the later statements of the commit
        await _refuse_inserts_into(engine, fails_at)
        # through SQLAlchemy, or straight from asyncpg for the multi-row inserts
        with pytest.raises((DBAPIError, asyncpg.PostgresError), match="injected failure"):
            await handle_batch([incoming(c) for c in commands], SqlUnitOfWork(engine))
        await _allow_inserts_into(engine, fails_at)

    assert await counts(engine) == before
    assert await _ticket(engine, existing) == ticket_before
    assert await versions(engine, existing) == [1]

    # Redelivered after the fault, the batch is handled afresh — the inbox did not keep it.
    outcomes = await handle_batch([incoming(c) for c in commands], SqlUnitOfWork(engine))
    assert [o.status for o in outcomes] == ["accepted"] * 5
    assert await versions(engine, existing) == [1, 2, 3, 4, 5]  # update, reply, auto-open, time
    assert await versions(engine, new_ticket) == [1]
    assert (await _ticket(engine, existing))["title"] == "Renamed"
    assert await counts(engine) == before | {
        "tickets": before["tickets"] + 2, "replies": 1, "time_entries": 1,
        "ticket_events": before["ticket_events"] + 6, "processed_commands": before["processed_commands"] + 5,
        "email_messages": 1,
    }


# ---- idempotency ------------------------------------------------------------------------------
async def test_a_redelivered_batch_changes_nothing_and_reports_the_original_results(engine: AsyncEngine) -> None:
    ticket_id, agent = new_id(), staff()
    commands = [
        CreateTicket(actor=customer(), payload={"ticket_id": ticket_id, "title": "T", "description": "D"}),
        AddReply(actor=agent, payload={"ticket_id": ticket_id, "reply_id": uuid.uuid4(), "body": "B"}),
        _log_time(ticket_id, 7),
    ]
    first = await handle_batch([incoming(c, reply_to=REPLY_TO) for c in commands], SqlUnitOfWork(engine))
    stored, ticket = await counts(engine), await _ticket(engine, ticket_id)
    async with engine.connect() as conn:
        inbox = (await conn.execute(select(t.processed_commands).order_by(t.processed_commands.c.seq))).all()

    again = await handle_batch([incoming(c) for c in commands], SqlUnitOfWork(engine))

    assert [o.status for o in first] == ["accepted"] * 3
    assert [o.status for o in again] == ["duplicate"] * 3
    assert [o.result for o in again] == [o.result for o in first]
    assert [o.reply_to for o in again] == [REPLY_TO] * 3  # the stored reply_to still gets the result
    assert await counts(engine) == stored
    assert await _ticket(engine, ticket_id) == ticket
    async with engine.connect() as conn:
        assert (await conn.execute(select(t.processed_commands).order_by(t.processed_commands.c.seq))).all() == inbox

    # Mixed with new work, and with a command repeated inside one batch.
    fresh = _log_time(ticket_id, 3)
    mixed = await handle_batch([incoming(commands[1]), incoming(fresh), incoming(fresh)], SqlUnitOfWork(engine))
    assert [o.status for o in mixed] == ["duplicate", "accepted", "duplicate"]
    assert mixed[0].result == first[1].result and mixed[2].result == mixed[1].result
    assert await versions(engine, ticket_id) == [1, 2, 3, 4, 5]
    assert (await _ticket(engine, ticket_id))["time_spent_minutes"] == 10
    assert await count(engine, t.processed_commands) == 4


# ---- concurrency ------------------------------------------------------------------------------
async def test_concurrent_units_of_work_on_one_ticket_serialize_through_the_row_lock(engine: AsyncEngine) -> None:
    ticket_id = new_id()
    await _create(engine, ticket_id)
    held = HeldUnitOfWork(engine)
    first = asyncio.create_task(handle_batch([incoming(_log_time(ticket_id, 10))], held))
    await asyncio.wait_for(held.at_commit.wait(), 10)  # first has locked the ticket and written version 2

    second = asyncio.create_task(handle_batch([incoming(_log_time(ticket_id, 20))], SqlUnitOfWork(engine)))
    await eventually(lambda: lock_waiters(engine), timeout=10, what="the second unit of work to wait for the lock")
    assert not second.done()
    held.release()
    [a], [b] = await asyncio.wait_for(asyncio.gather(first, second), 10)

    assert (a.status, b.status) == ("accepted", "accepted")
    assert (parse_result(result_json(a.result)).ticket_version, parse_result(result_json(b.result)).ticket_version) == (2, 3)
    assert await versions(engine, ticket_id) == [1, 2, 3]
    ticket = await _ticket(engine, ticket_id)
    assert (ticket["version"], ticket["time_spent_minutes"]) == (3, 30)  # no lost update
    assert await count(engine, t.time_entries) == 2


async def test_many_concurrent_commands_on_one_ticket_all_apply_without_gap_or_duplicate(
    engine: AsyncEngine,
) -> None:
    ticket_id, n = new_id(), 10
    await _create(engine, ticket_id)

    batches = await asyncio.gather(*(
        handle_batch([incoming(_log_time(ticket_id, minutes))], SqlUnitOfWork(engine)) for minutes in range(1, n + 1)
    ))

    outcomes = [o for batch in batches for o in batch]
    assert [o.status for o in outcomes] == ["accepted"] * n
    assert sorted(parse_result(result_json(o.result)).ticket_version for o in outcomes) == list(range(2, n + 2))
    assert await versions(engine, ticket_id) == list(range(1, n + 2))
    ticket = await _ticket(engine, ticket_id)
    assert (ticket["version"], ticket["time_spent_minutes"]) == (n + 1, n * (n + 1) // 2)


def _runtime(engine: AsyncEngine) -> SimpleNamespace:
    """What ``commands.message_bus`` uses of the Runtime."""
    settings = load_settings(retry_initial_backoff_s=0.05, retry_max_backoff_s=0.2)
    return SimpleNamespace(engine=engine, settings=settings, metrics=Metrics(), outbox_handoff=None)


@pytest.mark.parametrize("same_message", [False, True], ids=["other-message", "same-message"])
async def test_two_batches_creating_one_ticket_at_once_make_exactly_one(
    engine: AsyncEngine, same_message: bool,
) -> None:
    ticket_id, other_id = new_id(), new_id()
    winner = CreateTicket(actor=customer(), payload={"ticket_id": ticket_id, "title": "First", "description": "D"})
    loser = winner if same_message else CreateTicket(
        actor=customer(), payload={"ticket_id": ticket_id, "title": "Second", "description": "D"})
    bystander = CreateTicket(actor=customer(), payload={"ticket_id": other_id, "title": "Other", "description": "D"})
    held = HeldUnitOfWork(engine)
    first = asyncio.create_task(handle_batch([incoming(winner)], held))
    await asyncio.wait_for(held.at_commit.wait(), 10)  # the first ticket row is written, not committed

    second = asyncio.create_task(message_bus(_runtime(engine)).handle([incoming(loser), incoming(bystander)]))
    await eventually(lambda: lock_waiters(engine), timeout=10, what="the second insert to wait for the first")
    held.release()
    [won], outcomes = await asyncio.wait_for(asyncio.gather(first, second), 20)

    assert won.status == "accepted"
    lost, other = outcomes
    if same_message:
        assert (lost.status, lost.result) == ("duplicate", won.result)
    else:
        assert (lost.status, lost.reason) == ("rejected", "conflict")
        assert parse_result(result_json(lost.result)).reason == "conflict"
    assert other.status == "accepted"  # the rest of the batch is not lost with it
    assert (await _ticket(engine, ticket_id))["title"] == "First"
    assert await versions(engine, ticket_id) == [1] and await versions(engine, other_id) == [1]
    assert await count(engine, t.tickets) == 2
    assert await count(engine, t.processed_commands) == (2 if same_message else 3)


async def test_a_batch_hitting_a_constraint_falls_back_to_one_by_one(engine: AsyncEngine) -> None:
    ticket_id, reply_id, agent = new_id(), uuid.uuid4(), staff()
    await _create(engine, ticket_id)
    await handle_batch([incoming(AddReply(actor=agent, payload={"ticket_id": ticket_id, "reply_id": reply_id,
                                                                 "body": "first"}))], SqlUnitOfWork(engine))
    reused = AddReply(actor=agent, payload={"ticket_id": ticket_id, "reply_id": reply_id, "body": "again"})
    fine = _log_time(ticket_id, 15)

    outcomes = await message_bus(_runtime(engine)).handle([incoming(reused), incoming(fine)])

    assert [(o.status, o.reason) for o in outcomes] == [("rejected", "conflict"), ("accepted", None)]
    assert await versions(engine, ticket_id) == [1, 2, 3, 4]  # created, reply, auto-open, time — nothing for the reuse
    async with engine.connect() as conn:
        row = (await conn.execute(select(t.processed_commands).where(
            t.processed_commands.c.message_id == reused.message_id))).one()
        assert [r.body for r in await conn.execute(select(t.replies))] == ["first"]
    assert (row.status, json.loads(row.result)["reason"]) == ("rejected", "conflict")


# ---- a dropped connection -----------------------------------------------------------------------
async def test_a_pooled_connection_the_server_dropped_fails_transiently_and_is_replaced(engine: AsyncEngine) -> None:
    """The unit of work's BEGIN goes straight to asyncpg, and it is the first use of a pooled
    connection: a connection the server dropped must be a transient failure (retried) and leave
    the pool, as when SQLAlchemy itself meets it — not fail every batch after it."""
    async with SqlUnitOfWork(engine) as uow:
        await uow.lock_tickets([new_id()])
        pid = await (await uow._driver()).fetchval("SELECT pg_backend_pid()")
    admin = await asyncpg.connect(_asyncpg_dsn(engine.url.render_as_string(hide_password=False)))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        await eventually(lambda: _gone(admin, pid), timeout=10, what="the backend to end")
    finally:
        await admin.close()

    with pytest.raises(Exception) as refused:
        async with SqlUnitOfWork(engine) as uow:
            await uow.lock_tickets([new_id()])
    assert is_transient(refused.value), repr(refused.value)
    async with SqlUnitOfWork(engine) as uow:  # on a new connection
        await uow.lock_tickets([new_id()])
        assert await (await uow._driver()).fetchval("SELECT pg_backend_pid()") != pid


async def _gone(admin: asyncpg.Connection, pid: int) -> bool:
    return not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid)


# ---- locks on tickets that do not exist yet -----------------------------------------------------
async def test_a_zombie_create_committing_during_the_new_owners_batch_is_seen_by_it(engine: AsyncEngine) -> None:
    """After a rebalance the old owner (a zombie) still handles a ``ticket.create`` while the new
    owner handles the same records plus the next command on that ticket. The new owner must wait
    for the zombie's lock on the not-yet-existing ticket id, then see both the create (duplicate)
    and the ticket — never reject the next command as ``not_found``."""
    ticket_id = new_id()
    create = CreateTicket(actor=customer(), payload={"ticket_id": ticket_id, "title": "T", "description": "D"})
    follow_up = _log_time(ticket_id, 5)
    zombie = HeldUnitOfWork(engine)
    old_owner = asyncio.create_task(handle_batch([incoming(create)], zombie))
    await asyncio.wait_for(zombie.at_commit.wait(), 10)  # the create is written, not committed

    new_owner = asyncio.create_task(handle_batch([incoming(create), incoming(follow_up)], SqlUnitOfWork(engine)))
    await eventually(lambda: lock_waiters(engine), timeout=10, what="the new owner to wait for the ticket id's lock")
    assert not new_owner.done()
    zombie.release()
    [created], (again, logged) = await asyncio.wait_for(asyncio.gather(old_owner, new_owner), 10)

    assert created.status == "accepted"
    assert (again.status, again.result) == ("duplicate", created.result)
    assert (logged.status, logged.reason) == ("accepted", None)
    assert await versions(engine, ticket_id) == [1, 2]
    assert (await _ticket(engine, ticket_id))["time_spent_minutes"] == 5


# ---- ticket.merge: two tickets in one command ---------------------------------------------------
def _merge(source: uuid.UUID, target: uuid.UUID) -> MergeTicket:
    return MergeTicket(actor=staff(), payload={"ticket_id": source, "into_ticket_id": target})


async def test_a_two_ticket_command_keeps_both_changes(engine: AsyncEngine) -> None:
    owner = customer()
    source, target = new_id(), new_id()
    await _create(engine, source, owner)
    await _create(engine, target, owner)

    [merged] = await handle_batch([incoming(_merge(source, target))], SqlUnitOfWork(engine))

    assert merged.status == "accepted"
    assert await versions(engine, source) == [1, 2, 3] and await versions(engine, target) == [1, 2]
    after_source, after_target = await _ticket(engine, source), await _ticket(engine, target)
    assert (after_source["status"], after_source["merged_into"], after_source["version"]) == ("closed", target, 3)
    assert (after_target["merged_from"], after_target["version"]) == ([source], 2)
    assert len(parse_result(result_json(merged.result)).event_ids) == 3


async def test_a_merge_and_the_targets_own_commands_on_another_instance_serialize(engine: AsyncEngine) -> None:
    """The target's commands arrive on another partition (keyed by the target), handled by another
    instance while the merge runs: the target's lock orders them, versions stay gapless and the
    history (publication order, ``seq``) follows the versions."""
    owner = customer()
    source, target = new_id(), new_id()
    await _create(engine, source, owner)
    await _create(engine, target, owner)
    merging = HeldUnitOfWork(engine)
    merge = asyncio.create_task(handle_batch([incoming(_merge(source, target))], merging))
    await asyncio.wait_for(merging.at_commit.wait(), 10)  # both tickets locked and written, not committed

    others = [asyncio.create_task(handle_batch([incoming(_log_time(target, m))], SqlUnitOfWork(engine)))
              for m in (1, 2, 3)]
    await eventually(lambda: _at_least(engine, 3), timeout=10, what="the target's commands to wait for its lock")
    assert not any(task.done() for task in others)
    merging.release()
    [merged] = await asyncio.wait_for(merge, 10)
    logged = [o for task in others for o in await asyncio.wait_for(task, 10)]

    assert merged.status == "accepted" and [o.status for o in logged] == ["accepted"] * 3
    assert await versions(engine, target) == [1, 2, 3, 4, 5]  # received the merge (2), then 3 entries
    assert await versions(engine, source) == [1, 2, 3]
    assert (await _ticket(engine, target))["time_spent_minutes"] == 6


async def _at_least(engine: AsyncEngine, n: int) -> bool:
    return await lock_waiters(engine) >= n


# ---- the multi-row ticket writes -----------------------------------------------------------------
async def test_array_literals_read_back_as_the_exact_elements(engine: AsyncEngine) -> None:
    hostile = ["a", 'quo"te', "back\\slash", "NULL", "", " padded ", "{,}", "ünï", "a,b"]
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        assert await driver.fetchval("SELECT $1::text::text[]", array_literal(hostile)) == hostile
        assert await driver.fetchval("SELECT $1::text::text[]", array_literal([])) == []
        ids = [uuid.uuid4(), uuid.uuid4()]
        assert await driver.fetchval("SELECT $1::text::uuid[]", array_literal(ids)) == ids


async def test_one_batch_inserts_and_updates_many_tickets_with_arrays_of_different_lengths(
        engine: AsyncEngine) -> None:
    """New and changed tickets go as one multi-row statement each: every row keeps its own arrays."""
    agent = await add_user(engine, "agent")
    owner = customer()
    old = [new_id() for _ in range(3)]
    for ticket_id in old:
        await _create(engine, ticket_id, owner)
    new = [new_id() for _ in range(3)]
    batch = [incoming(CreateTicket(actor=owner, payload={"ticket_id": i, "title": f"T{n}", "description": "D",
                                                         "tags": [f"tag-{k}" for k in range(n)]}))
             for n, i in enumerate(new)]
    batch += [incoming(UpdateTicket(actor=staff(), payload={"ticket_id": i, "tags": [f"t{k}" for k in range(n + 1)]}))
              for n, i in enumerate(old)]
    batch.append(incoming(SetFollowers(actor=staff(), payload={"ticket_id": old[0], "add": [agent]})))

    outcomes = await handle_batch(batch, SqlUnitOfWork(engine))

    assert [o.status for o in outcomes] == ["accepted"] * len(batch), [o.reason for o in outcomes]
    for n, ticket_id in enumerate(new):
        row = await _ticket(engine, ticket_id)
        assert (row["title"], row["tags"], row["version"]) == (f"T{n}", [f"tag-{k}" for k in range(n)], 1)
    for n, ticket_id in enumerate(old):
        row = await _ticket(engine, ticket_id)
        assert row["tags"] == [f"t{k}" for k in range(n + 1)]
        assert row["follower_ids"] == ([agent] if n == 0 else [])
        assert row["version"] == (3 if n == 0 else 2)


async def test_a_batch_reads_its_locks_numbers_users_tickets_and_inbox_in_two_statements(engine: AsyncEngine) -> None:
    """``start_batch``: the advisory locks with the ticket numbers and the users, then the tickets
    ``FOR UPDATE`` with the inbox — what ``lock_tickets``, ``processed``, ``reserve_numbers`` and
    ``users`` read one by one, in two statements."""
    existing, absent = new_id(), new_id()
    created = await _create(engine, existing)
    agent = await add_user(engine, "agent")

    uow = SqlUnitOfWork(engine)
    async with uow:
        driver = await uow._driver()
        sent: list[str] = []
        driver.add_query_logger(lambda q: sent.append(q.query))

        async def statements() -> int:
            await asyncio.sleep(0)  # asyncpg hands each logged query to call_soon: let those callbacks run
            return len(sent)

        stored, users = await uow.start_batch([absent, existing], [created.message_id, new_id()], 3,
                                              [agent, uuid.uuid4()])
        assert await statements() == 2
        assert uow.get(existing) is not None and uow.get(existing).version == 1  # type: ignore[union-attr]
        assert uow.get(absent) is None and await uow.load(absent) is None and await statements() == 2  # known absent: no read
        assert set(stored) == {created.message_id} and stored[created.message_id].result == created.result
        assert set(users) == {agent} and users[agent].role.value == "agent"
        numbers = [await uow.next_number() for _ in range(3)]
        assert len(set(numbers)) == 3 and numbers == sorted(numbers) and await statements() == 2
        # the tickets' rows are locked: another transaction cannot take them
        async with engine.connect() as other:
            await other.execute(text("SET lock_timeout = '100ms'"))
            with pytest.raises(DBAPIError):
                await other.execute(select(t.tickets.c.id).where(t.tickets.c.id == existing).with_for_update())

    async with SqlUnitOfWork(engine) as empty:  # nothing to lock, number or look up: only the inbox
        assert await empty.start_batch([], [new_id()], 0, []) == ({}, {})
