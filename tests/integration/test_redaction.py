"""``ticket.redact`` and the erasure plan on real PostgreSQL, checked by grepping the whole database.

Markers (random words, and an e-mail address) are planted in everything a user can write: ticket
titles and descriptions, replies, status reasons, an e-mailed ticket and reply, a reply on a
colleague's ticket; staff write notes and internal notes quoting them. After the erasure's
``ticket.redact`` commands ran, no row of any table — every column cast to text, the search
documents and the history included — holds any of them; the colleague's own words (a control
marker) are still there, so the grep does find what is present.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from ticket_contracts import commands as c
from ticket_contracts import queries as q
from ticket_contracts.answers import HistoryAnswer, SearchAnswer, ThreadAnswer, TicketAnswer

from service.adapters import tables
from service.adapters.erasure import mark_sent, plan_erasure
from service.domain.redaction import MARKER
from service.domain.values import Actor, Role
from service.adapters.unit_of_work import SqlUnitOfWork
from service.handlers.bus import handle_batch
from service.handlers.messages import Incoming
from tests.integration.test_read_models import add_staff, ask, contract_actor, create, query, run


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


def marker(kind: str) -> str:
    return f"m{kind}{uuid.uuid4().hex[:10]}"


async def add_customer(engine: AsyncEngine, customer_id: uuid.UUID, email: str) -> Actor:
    actor = Actor(uuid.uuid4(), Role.CUSTOMER, customer_id)
    async with engine.begin() as conn:
        await conn.execute(insert(tables.users).values(
            user_id=actor.user_id, email=email, display_name=f"Name {email}", role="customer",
            customer_id=customer_id, active=True, updated_at=datetime.now(UTC)))
    return actor


async def results_of(engine: AsyncEngine, actor: Actor, *commands: c.CommandBase) -> list[dict[str, Any]]:
    items = [Incoming(cmd.message_id, cmd.type, cmd.message_id, None, actor, getattr(cmd.payload, "ticket_id", None),
                      cmd) for cmd in commands]
    outcomes = await handle_batch(items, SqlUnitOfWork(engine))
    return [{"status": o.result.status, "reason": o.result.reason, "ticket_id": str(o.result.ticket_id),
             "ticket_version": o.result.ticket_version} for o in outcomes if o.result]


async def grep(engine: AsyncEngine, *needles: str) -> dict[str, list[str]]:
    """Every table of the schema, every row as text (all columns, tsvectors and JSON included):
    which tables hold which needles (case-insensitive)."""
    found: dict[str, list[str]] = {}
    async with engine.connect() as conn:
        names = (await conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))).scalars().all()
        for table in names:
            for needle in needles:
                hit = await conn.scalar(text(f'SELECT EXISTS (SELECT 1 FROM "{table}" t WHERE t::text ILIKE :n)'),
                                        {"n": f"%{needle}%"})
                if hit:
                    found.setdefault(needle, []).append(table)
    return found


async def test_erasing_a_customer_leaves_none_of_their_words_or_address(engine: AsyncEngine) -> None:
    customer_id = uuid.uuid4()
    words = {k: marker(k) for k in ("title", "descr", "reply", "reason", "mail", "colleague", "note")}
    address = f"{marker('addr')}@example.test"
    alice = await add_customer(engine, customer_id, address)
    carol = await add_customer(engine, customer_id, f"{marker('carol')}@example.test")
    agent, admin = await add_staff(engine, Role.AGENT), await add_staff(engine, Role.ADMIN)
    gateway = Actor(uuid.uuid4(), Role.SYSTEM)
    own, mailed, colleagues = uuid.uuid4(), None, uuid.uuid4()
    control = marker("control")

    await run(engine, alice, create(own, title=f"Broken {words['title']}", description=f"Help {words['descr']}"))
    await run(engine, alice, (c.AddReply, {"ticket_id": own, "reply_id": uuid.uuid4(), "body": f"Still {words['reply']}"}))
    await run(engine, agent, (c.AddReply, {"ticket_id": own, "reply_id": uuid.uuid4(),
                                           "body": f"She wrote {words['reply']}", "internal": True}),
              (c.LogTime, {"ticket_id": own, "entry_id": uuid.uuid4(), "minutes": 5, "note": f"re {words['note']}"}),
              (c.ChangeStatus, {"ticket_id": own, "status": "resolved"}))
    await run(engine, alice, (c.ChangeStatus, {"ticket_id": own, "status": "open", "reason": f"no {words['reason']}"}))
    await run(engine, carol, create(colleagues, title=f"Carol's {control}"))
    await run(engine, alice, (c.AddReply, {"ticket_id": colleagues, "reply_id": uuid.uuid4(),
                                           "body": f"Me too {words['colleague']}"}))
    mail_id = f"<{marker('msgid')}@mail.example.test>"
    [ingested] = await results_of(engine, gateway, c.IngestEmail(actor=contract_actor(gateway), payload={
        "email_message_id": mail_id, "from_address": address, "subject": f"Mail {words['mail']}",
        "body": f"Dear team, {words['mail']} -- {address}", "received_at": datetime.now(UTC)}))
    assert ingested["status"] == "accepted", ingested
    mailed = uuid.UUID(ingested["ticket_id"])
    await run(engine, agent, (c.ChangeStatus, {"ticket_id": mailed, "status": "closed"}))  # closed …
    await run(engine, admin, (c.DeleteTicket, {"ticket_id": own, "reason": f"dup of {words['title']}"}))  # … deleted
    planted = [*words.values(), address, mail_id.strip("<>")]
    assert set(await grep(engine, *planted)) == set(planted)

    plan = await plan_erasure(engine, alice.user_id, uuid.uuid4(), datetime.now(UTC), whole_customer=False)

    assert plan.new and (plan.tickets_whole, plan.tickets_authored) == (2, 1)
    assert {(p.ticket_id, p.author_only) for p in plan.unsent} == {(own, False), (mailed, False), (colleagues, True)}
    erasure = Actor(uuid.uuid4(), Role.SYSTEM)
    outcomes = await results_of(engine, erasure, *(c.RedactTicket(
        message_id=p.command_id, actor=contract_actor(erasure),
        payload={"ticket_id": p.ticket_id, "author_id": alice.user_id if p.author_only else None})
        for p in plan.unsent))
    assert [o["status"] for o in outcomes] == ["accepted"] * 3, outcomes
    await mark_sent(engine, alice.user_id, [p.ticket_id for p in plan.unsent], last=True)

    assert await grep(engine, *planted, f"Name {address}") == {}
    assert {"tickets", "ticket_search", "ticket_events"} <= set((await grep(engine, control))[control])
    # the audit trail stays: who, when, what kind
    history = await ask(engine, admin, query(admin, q.TicketHistory, ticket_id=own))
    assert isinstance(history, HistoryAnswer)
    kinds = [e.type for e in history.entries]
    assert kinds[:2] == ["ticket.created", "ticket.reply_added"] and kinds[-1] == "ticket.redacted"
    assert history.entries[0].actor.user_id == alice.user_id and history.entries[0].payload["title"] == MARKER
    assert history.entries[-1].payload == {"author_id": None}
    assert [e.ticket_version for e in history.entries] == list(range(1, len(kinds) + 1))
    # the colleague's ticket keeps her words, loses alice's
    thread = await ask(engine, carol, query(carol, q.TicketThread, ticket_id=colleagues))
    ticket = await ask(engine, carol, query(carol, q.GetTicket, ticket_id=colleagues))
    assert isinstance(thread, ThreadAnswer) and [r.body for r in thread.replies] == [MARKER]
    assert isinstance(ticket, TicketAnswer) and control in ticket.ticket.title
    found = await ask(engine, agent, query(agent, q.SearchTickets, text=words["colleague"]))
    assert isinstance(found, SearchAnswer) and found.items == []
    async with engine.connect() as conn:
        user = (await conn.execute(text("SELECT email, display_name, active FROM users WHERE user_id = :u"),
                                   {"u": alice.user_id})).one()
    assert tuple(user) == ("", "", False)


async def test_a_second_erasure_plans_nothing_and_an_interrupted_one_resumes(engine: AsyncEngine) -> None:
    me = await add_customer(engine, uuid.uuid4(), f"{marker('addr')}@example.test")
    tickets = [uuid.uuid4() for _ in range(3)]
    await run(engine, me, *(create(t) for t in tickets))

    first = await plan_erasure(engine, me.user_id, uuid.uuid4(), datetime.now(UTC), whole_customer=False)
    await mark_sent(engine, me.user_id, [first.unsent[0].ticket_id], last=False)  # then the process died
    resumed = await plan_erasure(engine, me.user_id, uuid.uuid4(), datetime.now(UTC), whole_customer=False)

    assert first.new and not resumed.new and resumed.commands_sent == 1
    assert resumed.unsent == first.unsent[1:]  # the same command ids: repeats are inbox no-ops
    await mark_sent(engine, me.user_id, [p.ticket_id for p in resumed.unsent], last=True)
    again = await plan_erasure(engine, me.user_id, uuid.uuid4(), datetime.now(UTC), whole_customer=False)
    assert not again.new and again.done and again.commands_sent == 3


async def test_customer_scope_redacts_every_ticket_of_the_customer(engine: AsyncEngine) -> None:
    customer_id = uuid.uuid4()
    me = await add_customer(engine, customer_id, f"{marker('addr')}@example.test")
    colleague = await add_customer(engine, customer_id, f"{marker('addr')}@example.test")
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    await run(engine, me, create(mine))
    await run(engine, colleague, create(theirs))

    plan = await plan_erasure(engine, me.user_id, uuid.uuid4(), datetime.now(UTC), whole_customer=True)

    assert {(p.ticket_id, p.author_only) for p in plan.unsent} == {(mine, False), (theirs, False)}


async def test_redact_twice_changes_nothing_more_and_staff_may_not(engine: AsyncEngine) -> None:
    me = await add_customer(engine, uuid.uuid4(), f"{marker('addr')}@example.test")
    admin, agent = await add_staff(engine, Role.ADMIN), await add_staff(engine, Role.AGENT)
    tid = uuid.uuid4()
    await run(engine, me, create(tid, title=f"T {marker('t')}"))

    def redact(actor: Actor) -> c.RedactTicket:
        return c.RedactTicket(actor=contract_actor(actor), payload={"ticket_id": tid})

    [refused] = await results_of(engine, agent, redact(agent))
    [first] = await results_of(engine, admin, redact(admin))
    async with engine.connect() as conn:
        before = (await conn.execute(text("SELECT title, description FROM tickets WHERE id = :t"), {"t": tid})).one()
    [second] = await results_of(engine, admin, redact(admin))

    assert refused["reason"] == "forbidden"
    assert first["status"] == second["status"] == "accepted" and second["ticket_version"] == first["ticket_version"] + 1
    assert tuple(before) == (MARKER, MARKER)
    async with engine.connect() as conn:
        after = (await conn.execute(text("SELECT title, description FROM tickets WHERE id = :t"), {"t": tid})).one()
    assert tuple(after) == tuple(before)
