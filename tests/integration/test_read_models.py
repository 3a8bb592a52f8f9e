"""The query side on real PostgreSQL: handlers + read model, seeded by running real commands.

A visibility matrix (every role × every query × own / foreign / deleted ticket, with and
without internal notes) and canaries: marker strings planted in internal notes, time-entry
notes, a foreign and a deleted ticket must never appear in any answer to a customer. Then
filters, counting, cursors, keyset walks under concurrent inserts, and the plans of the
main statements.
"""

from __future__ import annotations

import asyncio

import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from ticket_contracts import commands as c
from ticket_contracts import queries as q
from ticket_contracts.answers import (
    AnswerBase,
    HistoryAnswer,
    ThreadAnswer,
    TicketAnswer,
    TicketPageAnswer,
    TimeEntriesAnswer,
)
from ticket_contracts.envelope import Actor as ContractActor

from service.adapters import read_models, tables
from service.adapters.count_decisions import CountDecisions
from service.adapters.explain import index_names, plan
from service.adapters.read_models import reading, ticket_page_statement
from service.adapters.serialization import answer_json
from service.adapters.unit_of_work import SqlUnitOfWork
from service.domain.errors import DomainError
from service.domain.values import Actor, Role
from service.handlers.bus import handle_batch
from service.handlers.messages import Incoming
from service.handlers.queries import answer
from service.handlers.read_model import PageRequest, TicketFilter, Total

# ---- seeding through the command side -----------------------------------------------------------


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


def contract_actor(actor: Actor) -> ContractActor:
    return ContractActor(user_id=actor.user_id, role=actor.role.value, customer_id=actor.customer_id)  # type: ignore[arg-type]


def customer() -> Actor:
    return Actor(uuid.uuid4(), Role.CUSTOMER, uuid.uuid4())


async def run(engine: AsyncEngine, actor: Actor, *commands: tuple[type[c.CommandBase], dict[str, Any]]) -> None:
    """Run commands in one batch (one transaction, one ``now``); each must be accepted."""
    items = []
    for kind, payload in commands:
        command = kind(actor=contract_actor(actor), payload=payload)  # type: ignore[call-arg]
        items.append(Incoming(command.message_id, command.type, command.message_id, None, actor,
                              getattr(command.payload, "ticket_id", None), command))
    outcomes = await handle_batch(items, SqlUnitOfWork(engine))
    assert [o.status for o in outcomes] == ["accepted"] * len(items), [o.result for o in outcomes]


def create(ticket_id: uuid.UUID, title: str = "Printer on fire", **extra: Any) -> tuple[type[c.CommandBase], dict[str, Any]]:
    return c.CreateTicket, {"ticket_id": ticket_id, "title": title, "description": "It smokes", **extra}


async def add_staff(engine: AsyncEngine, role: Role) -> Actor:
    actor = Actor(uuid.uuid4(), role)
    async with engine.begin() as conn:
        await conn.execute(insert(tables.users).values(
            user_id=actor.user_id, email=f"{actor.user_id.hex[:10]}@example.test", role=role.value,
            active=True, updated_at=datetime.now(UTC)))
    return actor


async def ask(engine: AsyncEngine, actor: Actor, query: q.QueryBase) -> AnswerBase | str:
    """The answer, or the reason code of the domain error the entrypoint would answer with. Every
    answer is also checked to be what validation would have made of it (below)."""
    try:
        async with reading(engine) as reads:
            result = await answer(query, actor, reads)
    except DomainError as error:
        return error.code
    assert_as_validated(result)
    return result


def assert_as_validated(result: AnswerBase) -> None:
    """The read model makes its page and thread views from its rows without validating them
    (service/adapters/row_views.py): validating the answer again must change nothing — no value of
    another type (a text where a UUID belongs, a naive moment), no field out of order — and its JSON
    must be the bytes pydantic writes."""
    again = type(result).model_validate(result.model_dump())
    assert again.model_dump() == result.model_dump()
    assert again == result, [(k, v, again.__dict__[k]) for k, v in result.__dict__.items() if again.__dict__[k] != v]
    assert answer_json(result) == again.model_dump_json().encode() == result.model_dump_json().encode()
    for view in [*getattr(result, "items", ()), *getattr(result, "replies", ())]:
        assert list(view.__dict__) == list(type(view).model_fields)
        assert type(view).model_validate(view.model_dump(), strict=True) == view


def query(actor: Actor, kind: type[q.QueryBase], **payload: Any) -> q.QueryBase:
    return kind(actor=contract_actor(actor), payload=payload)  # type: ignore[call-arg]


# ---- the world of the visibility matrix ---------------------------------------------------------


@dataclass
class World:
    alice: Actor  # a customer
    bob: Actor  # a customer of another customer
    agent: Actor
    admin: Actor
    system: Actor
    tickets: dict[str, uuid.UUID]  # own, own_quiet (no internal notes), foreign, deleted
    canaries: tuple[str, ...]  # never in an answer to a customer
    files: dict[str, dict[str, Any]]  # attachments of the own ticket: desc, clean, infected, note


@pytest.fixture(scope="module")
async def world(engine: AsyncEngine) -> World:
    alice, bob = customer(), customer()
    agent, admin = await add_staff(engine, Role.AGENT), await add_staff(engine, Role.ADMIN)
    system = Actor(uuid.uuid4(), Role.SYSTEM)
    ids = {name: uuid.uuid4() for name in ("own", "own_quiet", "foreign", "deleted")}
    secret, minutes_note, foreign, deleted, note_file, pending, infected = (
        f"{kind}-{uuid.uuid4().hex}" for kind in
        ("INTERNAL", "TIMENOTE", "FOREIGN", "DELETED", "NOTEFILE", "PENDINGURI", "INFECTEDURI"))
    # Attachments (issue 10): the description's stays pending, a reply's are scanned clean and
    # infected, an internal note's is scanned clean — a customer sees only the clean public uri.
    files = {name: attachment(name) for name in ("desc", "clean", "infected", "note")}
    files["desc"]["uri"] = f"s3://uploads/{pending}"
    files["infected"]["uri"] = f"s3://uploads/{infected}"
    files["note"] |= {"filename": f"{note_file}.txt", "uri": f"s3://uploads/{note_file}"}
    await run(engine, alice, create(ids["own"], attachments=[files["desc"]]), create(ids["own_quiet"]),
              create(ids["deleted"], title=deleted))
    await run(engine, bob, create(ids["foreign"], title=foreign))
    await run(engine, alice, (c.AddReply, {"ticket_id": ids["own"], "reply_id": uuid.uuid4(), "body": "Still smoking",
                                           "attachments": [files["clean"], files["infected"]]}),
              (c.AddReply, {"ticket_id": ids["own_quiet"], "reply_id": uuid.uuid4(), "body": "Hello?"}))
    for ticket in ("own", "foreign", "deleted"):
        tid = ids[ticket]
        note = {"attachments": [files["note"]]} if ticket == "own" else {}
        await run(engine, agent,
                  (c.AddReply, {"ticket_id": tid, "reply_id": uuid.uuid4(), "body": "On it"}),
                  (c.AddReply, {"ticket_id": tid, "reply_id": uuid.uuid4(), "body": secret, "internal": True, **note}),
                  (c.LogTime, {"ticket_id": tid, "entry_id": uuid.uuid4(), "minutes": 42, "note": minutes_note}),
                  (c.AssignTicket, {"ticket_id": tid, "assignee_id": agent.user_id}))
    await run(engine, system, *((c.RecordAttachmentScan, {
        "ticket_id": ids["own"], "attachment_id": files[name]["attachment_id"], "verdict": verdict,
        "scanner": "clamav", "scanned_at": datetime.now(UTC)}) for name, verdict in
        (("clean", "clean"), ("infected", "infected"), ("note", "clean"))))
    await run(engine, admin, (c.DeleteTicket, {"ticket_id": ids["deleted"], "reason": "spam"}))
    return World(alice, bob, agent, admin, system, ids,
                 (secret, minutes_note, foreign, deleted, note_file, pending, infected), files)


def attachment(name: str) -> dict[str, Any]:
    return {"attachment_id": str(uuid.uuid4()), "filename": f"{name}.png", "content_type": "image/png",
            "size_bytes": 1000, "sha256": "ab" * 32, "uri": f"s3://uploads/{name}-{uuid.uuid4().hex}"}


TICKET_QUERIES = {
    "get": q.GetTicket, "thread": q.TicketThread, "history": q.TicketHistory, "time_entries": q.TicketTimeEntries,
}
OK, NF, FORBIDDEN = "ok", "not_found", "forbidden"
#: role → query → ticket → expected outcome.
EXPECTED: dict[str, dict[str, dict[str, str]]] = {
    "customer": {
        "get": {"own": OK, "own_quiet": OK, "foreign": NF, "deleted": NF},
        "thread": {"own": OK, "own_quiet": OK, "foreign": NF, "deleted": NF},
        "history": dict.fromkeys(("own", "own_quiet", "foreign", "deleted"), FORBIDDEN),
        "time_entries": dict.fromkeys(("own", "own_quiet", "foreign", "deleted"), FORBIDDEN),
    },
    "agent": dict.fromkeys(TICKET_QUERIES, {"own": OK, "own_quiet": OK, "foreign": OK, "deleted": NF}),
    "admin": {  # a deleted ticket: ticket.get needs include_deleted, the ticket's parts do not
        "get": {"own": OK, "own_quiet": OK, "foreign": OK, "deleted": NF},
        **dict.fromkeys(("thread", "history", "time_entries"), dict.fromkeys(("own", "own_quiet", "foreign", "deleted"), OK)),
    },
    "system": dict.fromkeys(TICKET_QUERIES, dict.fromkeys(("own", "own_quiet", "foreign", "deleted"), FORBIDDEN)),
}
CASES = [(role, name, ticket) for role, by_query in EXPECTED.items() for name, by_ticket in by_query.items()
         for ticket in by_ticket]


def actor_of(world: World, role: str) -> Actor:
    return {"customer": world.alice, "agent": world.agent, "admin": world.admin, "system": world.system}[role]


def assert_nothing_hidden(world: World, result: AnswerBase | str) -> None:
    """What a customer must never see, in any answer."""
    if isinstance(result, str):
        return
    raw = result.model_dump_json()
    for canary in world.canaries:
        assert canary not in raw
    for hidden in (world.tickets["foreign"], world.tickets["deleted"]):
        assert str(hidden) not in raw
    assert '"time_spent_minutes":null' in raw or "time_spent_minutes" not in raw
    assert '"time_spent_minutes":4' not in raw and '"internal":true' not in raw


@pytest.mark.parametrize(("role", "name", "ticket"), CASES)
async def test_visibility_matrix(engine: AsyncEngine, world: World, role: str, name: str, ticket: str) -> None:
    actor = actor_of(world, role)
    result = await ask(engine, actor, query(actor, TICKET_QUERIES[name], ticket_id=world.tickets[ticket]))

    expected = EXPECTED[role][name][ticket]
    assert (OK if isinstance(result, AnswerBase) else result) == expected
    if role == "customer":
        assert_nothing_hidden(world, result)
    if expected != OK:
        return
    staff = role in ("agent", "admin")
    if isinstance(result, TicketAnswer):
        assert result.ticket.id == world.tickets[ticket]
        assert result.ticket.time_spent_minutes == (None if not staff else 42 if ticket != "own_quiet" else 0)
        if ticket == "own":
            [desc] = result.ticket.attachments
            assert desc.scan_status == "pending" and str(desc.attachment_id) == world.files["desc"]["attachment_id"]
            assert desc.uri == (world.files["desc"]["uri"] if staff else None)
    elif isinstance(result, ThreadAnswer):
        internal = [reply for reply in result.replies if reply.internal]
        assert len(internal) == (1 if staff and ticket != "own_quiet" else 0)
        assert len(result.replies) - len(internal) == {"own": 2, "own_quiet": 1}.get(ticket, 1)
        if ticket == "own":
            shown = {str(a.attachment_id): a for reply in result.replies for a in reply.attachments}
            f = world.files
            want = {"clean": "clean", "infected": "infected", **({"note": "clean"} if staff else {})}
            assert {n: shown[f[n]["attachment_id"]].scan_status for n in want} == want
            assert len(shown) == len(want)
            assert shown[f["clean"]["attachment_id"]].uri == f["clean"]["uri"]
            assert shown[f["infected"]["attachment_id"]].uri == (f["infected"]["uri"] if staff else None)
    elif isinstance(result, HistoryAnswer):
        assert [e.ticket_version for e in result.entries] == list(range(1, len(result.entries) + 1))
        assert any(e.internal for e in result.entries) == (ticket != "own_quiet")
    elif isinstance(result, TimeEntriesAnswer):
        assert result.total_minutes == (0 if ticket == "own_quiet" else 42)


async def test_customer_facing_events_never_carry_hidden_attachments(engine: AsyncEngine, world: World) -> None:
    """Events not marked internal go to customer-facing consumers: no internal note's attachment, no uri
    of an attachment not scanned clean; the clean one's uri arrives with its verdict."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT body, internal FROM ticket_events WHERE ticket_id = :t"),
                                   {"t": world.tickets["own"]})).all()
    public = " ".join(body for body, internal in rows if not internal)
    hidden = " ".join(body for body, internal in rows if internal)
    for canary in world.canaries[4:] + (world.canaries[0],):
        assert canary not in public
    assert world.files["note"]["attachment_id"] not in public and world.files["note"]["attachment_id"] in hidden
    assert world.files["clean"]["uri"] in public and world.files["desc"]["attachment_id"] in public


async def test_admin_finds_a_deleted_ticket_only_when_asking_for_it(engine: AsyncEngine, world: World) -> None:
    deleted = world.tickets["deleted"]
    found = await ask(engine, world.admin, query(world.admin, q.GetTicket, ticket_id=deleted, include_deleted=True))

    assert isinstance(found, TicketAnswer) and found.ticket.deleted_at is not None
    for actor in (world.alice, world.agent):
        assert await ask(engine, actor, query(actor, q.GetTicket, ticket_id=deleted, include_deleted=True)) == FORBIDDEN


LISTINGS = {
    "list": lambda w, a: query(a, q.ListTickets),
    "list_own_customer": lambda w, a: query(a, q.ListTickets, customer_id=w.alice.customer_id),
    "list_other_customer": lambda w, a: query(a, q.ListTickets, customer_id=w.bob.customer_id),
    "list_with_deleted": lambda w, a: query(a, q.ListTickets, customer_id=w.alice.customer_id, include_deleted=True),
    "list_text": lambda w, a: query(a, q.ListTickets, text=w.canaries[2]),
    "my": lambda w, a: query(a, q.MyTickets),
}


@pytest.mark.parametrize("role", ["customer", "agent", "admin", "system"])
@pytest.mark.parametrize("listing", LISTINGS)
async def test_listings_show_exactly_what_the_role_may_see(engine: AsyncEngine, world: World, role: str,
                                                           listing: str) -> None:
    actor = actor_of(world, role)
    result = await ask(engine, actor, LISTINGS[listing](world, actor))

    t = world.tickets
    alices = {t["own"], t["own_quiet"]}
    expected: dict[str, dict[str, Any]] = {
        "customer": {"list": alices, "list_own_customer": alices, "list_other_customer": FORBIDDEN,
                     "list_with_deleted": FORBIDDEN, "list_text": set(), "my": alices},
        "agent": {"list_own_customer": alices, "list_other_customer": {t["foreign"]},
                  "list_with_deleted": FORBIDDEN, "list_text": {t["foreign"]}, "my": {t["own"], t["foreign"]}},
        "admin": {"list_own_customer": alices, "list_other_customer": {t["foreign"]},
                  "list_with_deleted": alices | {t["deleted"]}, "list_text": {t["foreign"]}, "my": set()},
        "system": dict.fromkeys(LISTINGS, FORBIDDEN),
    }
    want = expected[role].get(listing)
    if role == "customer":
        assert_nothing_hidden(world, result)
    if want is None:  # staff listing everything: the shared database holds other tests' tickets too
        assert isinstance(result, TicketPageAnswer) and t["deleted"] not in {i.id for i in result.items}
        return
    if isinstance(want, str):
        assert result == want
        return
    assert isinstance(result, TicketPageAnswer)
    assert {i.id for i in result.items} == want and result.total == len(want) and result.total_exact
    assert all((i.time_spent_minutes is None) == (role == "customer") for i in result.items)


# ---- filters, sorts, counts and cursors on one customer's tickets -------------------------------


@dataclass
class Shelf:
    customer: Actor
    agent: Actor
    category: uuid.UUID
    by_title: dict[str, uuid.UUID]


@pytest.fixture(scope="module")
async def shelf(engine: AsyncEngine) -> Shelf:
    """Ten tickets of one customer, varied in every filtered field."""
    me, agent, category = customer(), await add_staff(engine, Role.AGENT), uuid.uuid4()
    specs = [("Printer jam", "low"), ("printer toner", "high"), ("VPN down", "urgent"), ("100% disk", "normal"),
             ("disk_full", "normal"), ("Login loop", "high"), ("Email bounce", "low"), ("Wifi slow", "urgent"),
             ("Invoice wrong", "normal"), ("Refund please", "high")]
    by_title = {title: uuid.uuid4() for title, _ in specs}
    for i, (title, priority) in enumerate(specs):  # one batch each: distinct created_at, in this order
        extra = {"category_id": category} if i % 3 == 0 else {}
        await run(engine, me, create(by_title[title], title=title, priority=priority, **extra))
    staff_moves = [(c.AssignTicket, {"ticket_id": by_title[t], "assignee_id": agent.user_id})
                   for t in ("VPN down", "Wifi slow")]
    staff_moves += [(c.ChangeStatus, {"ticket_id": by_title[t], "status": "in_progress"})
                    for t in ("VPN down", "Login loop")]
    await run(engine, agent, *staff_moves)
    return Shelf(me, agent, category, by_title)


FILTERS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "status": ({"status": ["in_progress"]}, {"VPN down", "Login loop"}),
    "status set": ({"status": ["in_progress", "new"]}, "ALL"),  # type: ignore[dict-item]
    "priority set": ({"priority": ["urgent", "low"]}, {"VPN down", "Wifi slow", "Printer jam", "Email bounce"}),
    "assignee": ({"assignee_id": "AGENT"}, {"VPN down", "Wifi slow"}),
    "unassigned + priority": ({"unassigned": True, "priority": ["urgent"]}, set()),
    "category": ({"category_id": "CATEGORY"}, {"Printer jam", "100% disk", "Email bounce", "Refund please"}),
    "text, any case": ({"text": "PRINTER"}, {"Printer jam", "printer toner"}),
    "text with %": ({"text": "%"}, {"100% disk"}),  # LIKE wildcards are matched literally
    "text with _": ({"text": "_"}, {"disk_full"}),
    "two filters": ({"status": ["new"], "priority": ["high", "urgent"]}, {"printer toner", "Wifi slow", "Refund please"}),
}


@pytest.mark.parametrize("case", FILTERS)
async def test_list_filters(engine: AsyncEngine, shelf: Shelf, case: str) -> None:
    payload, titles = FILTERS[case]
    payload = {k: shelf.agent.user_id if v == "AGENT" else shelf.category if v == "CATEGORY" else v
               for k, v in payload.items()}
    want = set(shelf.by_title.values()) if titles == "ALL" else {shelf.by_title[t] for t in titles}

    for actor, extra in ((shelf.customer, {}), (shelf.agent, {"customer_id": shelf.customer.customer_id})):
        result = await ask(engine, actor, query(actor, q.ListTickets, **payload, **extra))
        assert isinstance(result, TicketPageAnswer), result
        assert {i.id for i in result.items} == want and result.total == len(want)


async def test_list_created_range_is_inclusive_then_exclusive(engine: AsyncEngine, shelf: Shelf) -> None:
    me = shelf.customer
    everything = await ask(engine, me, query(me, q.ListTickets, descending=False))
    assert isinstance(everything, TicketPageAnswer)
    first, third = everything.items[0].created_at, everything.items[2].created_at

    result = await ask(engine, me, query(me, q.ListTickets, created_from=first, created_to=third))

    assert isinstance(result, TicketPageAnswer)
    assert [i.id for i in result.items] == [i.id for i in reversed(everything.items[:2])]


@pytest.mark.parametrize("payload", [
    {"unassigned": True, "assignee_id": str(uuid.uuid4())},
    {"created_from": "2026-02-01T00:00:00Z", "created_to": "2026-01-01T00:00:00Z"},
    {"cursor": "not a cursor"},
    {"cursor": "eyJzIjoiY3JlYXRlZCJ9"},  # base64 JSON, but not ours
])
async def test_invalid_listings_are_validation_errors(engine: AsyncEngine, shelf: Shelf, payload: dict[str, Any]) -> None:
    assert await ask(engine, shelf.agent, query(shelf.agent, q.ListTickets, **payload)) == "validation_error"


async def test_a_cursor_only_continues_the_listing_it_came_from(engine: AsyncEngine, shelf: Shelf) -> None:
    me, other = shelf.customer, customer()
    first = await ask(engine, me, query(me, q.ListTickets, limit=3, status=["new"]))
    assert isinstance(first, TicketPageAnswer) and first.next_cursor

    for actor, payload in ((me, {"sort": "updated"}), (me, {"descending": False}), (me, {"status": ["open"]}),
                           (other, {"status": ["new"]})):  # other: same filters, another customer's scope
        again = await ask(engine, actor, query(actor, q.ListTickets, limit=3, cursor=first.next_cursor, **payload))
        assert again == "validation_error", payload


@pytest.mark.parametrize("sort", ["created", "updated", "priority"])
@pytest.mark.parametrize("descending", [True, False])
async def test_sorts_order_pages(engine: AsyncEngine, shelf: Shelf, sort: str, descending: bool) -> None:
    me = shelf.customer
    items = await walk(engine, me, {"sort": sort, "descending": descending, "limit": 3})

    rank = {"low": 1, "normal": 2, "high": 3, "urgent": 4}
    key = {"created": lambda i: (i.created_at, i.id), "updated": lambda i: (i.updated_at, i.id),
           "priority": lambda i: (rank[i.priority], i.created_at, i.id)}[sort]
    assert [key(i) for i in items] == sorted((key(i) for i in items), reverse=descending)
    assert {i.id for i in items} == set(shelf.by_title.values())


async def walk(engine: AsyncEngine, actor: Actor, payload: dict[str, Any], between_pages: Any = None) -> list[Any]:
    items, cursor, totals = [], None, set()
    for _ in range(1000):
        page = await ask(engine, actor, query(actor, q.ListTickets, **payload, cursor=cursor))
        assert isinstance(page, TicketPageAnswer), page
        items.extend(page.items)
        totals.add((page.total, page.total_exact))
        if page.next_cursor is None:
            assert len(totals) == 1  # every page repeats the first page's total
            return items
        cursor = page.next_cursor
        if between_pages is not None:
            await between_pages()
    raise AssertionError("the walk did not end")


async def _count(reads: Any, where: TicketFilter, cap: int) -> Total:
    """The total a first page gets (counted with the page, up to ``cap``)."""
    _, total = await reads.tickets(where, PageRequest("created", True, None, 1), staff=False, count_cap=cap)
    assert total is not None
    return total  # type: ignore[no-any-return]


async def test_count_is_exact_up_to_the_cap_then_an_estimate(engine: AsyncEngine, shelf: Shelf) -> None:
    mine = TicketFilter(customer_id=shelf.customer.customer_id)
    async with reading(engine) as reads:
        exact = await _count(reads, mine, cap=10)
        capped = await _count(reads, mine, cap=4)

    assert (exact.value, exact.exact) == (10, True)
    assert capped.exact is False and capped.value >= 5


async def test_an_expensive_count_is_not_run_the_estimate_is_the_answer(
    engine: AsyncEngine, shelf: Shelf, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_models, "COUNT_COST_BUDGET", 0.0)  # every count is too expensive
    async with reading(engine) as reads:
        total = await _count(reads, TicketFilter(customer_id=shelf.customer.customer_id), cap=10)

    assert total.exact is False and total.value >= 1  # the planner's estimate: never zero rows


async def test_a_first_page_asked_again_reuses_its_count_decision_not_its_total(engine: AsyncEngine) -> None:
    now = [0.0]
    decisions = CountDecisions(ttl_s=30.0, clock=lambda: now[0])
    me, other = customer(), customer()
    await run(engine, me, *(create(uuid.uuid4()) for _ in range(3)))
    await run(engine, other, create(uuid.uuid4()))

    async def first_page(actor: Actor) -> tuple[Total, list[str]]:
        statements: list[str] = []
        async with reading(engine, decisions=decisions) as reads:
            reads._conn.add_query_logger(lambda record: statements.append(record.query))
            total = await _count(reads, TicketFilter(customer_id=actor.customer_id), cap=10)
        return total, [sql.split()[0] for sql in statements]

    assert await first_page(me) == (Total(3, True), ["EXPLAIN", "SELECT"])
    await run(engine, me, create(uuid.uuid4()))
    assert await first_page(me) == (Total(4, True), ["SELECT"])  # decided already; counted afresh
    assert await first_page(other) == (Total(1, True), ["EXPLAIN", "SELECT"])  # its own filter
    now[0] = 30.0
    assert await first_page(me) == (Total(4, True), ["EXPLAIN", "SELECT"])  # decided again once stale
    assert len(decisions) == 2


async def test_the_first_page_counts_and_later_pages_carry_the_total(engine: AsyncEngine) -> None:
    me = customer()
    await run(engine, me, *(create(uuid.uuid4()) for _ in range(10)))
    first = await ask(engine, me, query(me, q.ListTickets, limit=4))
    assert isinstance(first, TicketPageAnswer) and (first.total, first.total_exact) == (10, True)
    await run(engine, me, create(uuid.uuid4()))  # after the walk started

    second = await ask(engine, me, query(me, q.ListTickets, limit=4, cursor=first.next_cursor))

    assert isinstance(second, TicketPageAnswer) and second.total == 10
    fresh = await ask(engine, me, query(me, q.ListTickets, limit=4))
    assert isinstance(fresh, TicketPageAnswer) and fresh.total == 11


# ---- keyset walks under concurrent inserts ------------------------------------------------------


@pytest.mark.parametrize("sort", ["created", "updated", "priority"])
@pytest.mark.parametrize("descending", [True, False])
async def test_walking_all_pages_sees_every_ticket_once_while_tickets_are_created(
    engine: AsyncEngine, sort: str, descending: bool
) -> None:
    me, agent = customer(), await add_staff(engine, Role.AGENT)
    priorities = itertools.cycle(["low", "normal", "high", "urgent", "normal"])
    originals: set[uuid.UUID] = set()
    for _ in range(4):  # each batch shares one created_at: ties broken by id
        batch = [create(uuid.uuid4(), priority=next(priorities)) for _ in range(12)]
        originals |= {payload["ticket_id"] for _, payload in batch}
        await run(engine, me, *batch)
    created: set[uuid.UUID] = set()

    async def create_more() -> None:
        batch = [create(uuid.uuid4(), priority=next(priorities)) for _ in range(3)]
        created.update(payload["ticket_id"] for _, payload in batch)
        await run(engine, me, *batch)

    for actor, scope in ((me, {}), (agent, {"customer_id": me.customer_id})):
        seen = [i.id for i in await walk(engine, actor, {"sort": sort, "descending": descending, "limit": 7, **scope},
                                         between_pages=create_more)]
        assert len(seen) == len(set(seen)), "a ticket appeared twice"
        assert originals <= set(seen), "a ticket that existed at the start was missed"
        assert set(seen) <= originals | created
    assert created, "tickets were created during the walks"


# ---- thread and history paging ------------------------------------------------------------------


async def test_thread_pages_in_order_and_skips_internal_notes_for_customers(engine: AsyncEngine) -> None:
    me, agent, tid = customer(), await add_staff(engine, Role.AGENT), uuid.uuid4()
    await run(engine, me, create(tid))
    for n in range(5):  # each batch: one public reply and one internal note, same created_at
        await run(engine, agent, (c.AddReply, {"ticket_id": tid, "reply_id": uuid.uuid4(), "body": f"public {n}"}),
                  (c.AddReply, {"ticket_id": tid, "reply_id": uuid.uuid4(), "body": f"note {n}", "internal": True}))

    async def thread(actor: Actor) -> list[Any]:
        replies, cursor = [], None
        while True:
            page = await ask(engine, actor, query(actor, q.TicketThread, ticket_id=tid, limit=3, cursor=cursor))
            assert isinstance(page, ThreadAnswer), page
            replies += page.replies
            if (cursor := page.next_cursor) is None:
                return replies

    staff_view, customer_view = await thread(agent), await thread(me)

    assert len(staff_view) == 10 and [r.body for r in customer_view] == [f"public {n}" for n in range(5)]
    keys = [(r.created_at, r.id) for r in staff_view]
    assert keys == sorted(keys) and len(set(keys)) == 10


async def test_history_pages_by_version(engine: AsyncEngine) -> None:
    me, agent, tid = customer(), await add_staff(engine, Role.AGENT), uuid.uuid4()
    await run(engine, me, create(tid))
    for n in range(4):
        await run(engine, agent, (c.AddReply, {"ticket_id": tid, "reply_id": uuid.uuid4(), "body": f"r{n}",
                                              "internal": True}))

    first = await ask(engine, agent, query(agent, q.TicketHistory, ticket_id=tid, limit=3))
    assert isinstance(first, HistoryAnswer) and first.next_cursor == "3"
    rest = await ask(engine, agent, query(agent, q.TicketHistory, ticket_id=tid, after_version=3))

    assert isinstance(rest, HistoryAnswer) and rest.next_cursor is None
    entries = first.entries + rest.entries
    assert [e.ticket_version for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].type == "ticket.created" and entries[0].actor.user_id == me.user_id
    assert entries[1].payload["reply"]["body"] == "r0" and entries[1].internal


# ---- the statements use the indexes -------------------------------------------------------------

NOW = datetime.now(UTC)
PLANS = {
    "customer's tickets": (TicketFilter(customer_id=uuid.uuid4()), "created", "ix_tickets_customer_created"),
    "assigned tickets": (TicketFilter(assignee_id=uuid.uuid4()), "created", "ix_tickets_assignee_created"),
    "by status": (TicketFilter(statuses=("open",)), "created", "ix_tickets_status_created"),
    "by category": (TicketFilter(category_id=uuid.uuid4()), "created", "ix_tickets_category_created"),
    "newest": (TicketFilter(), "created", "ix_tickets_created"),
    "recently updated": (TicketFilter(), "updated", "ix_tickets_updated"),
    "most urgent": (TicketFilter(), "priority", "ix_tickets_priority"),
}


@pytest.mark.parametrize("case", PLANS)
async def test_page_statements_walk_an_index_in_sort_order(engine: AsyncEngine, case: str) -> None:
    """With sequential scans and sorts priced out, a plan exists only if an index serves both the
    filter and the order (the benchmark shows the planner choosing them unprompted on 1M rows)."""
    where, sort, index = PLANS[case]
    page = PageRequest(sort, True, (NOW, uuid.uuid4()) if sort != "priority" else (3, NOW, uuid.uuid4()), 25)
    async with engine.connect() as conn:
        await conn.execute(text("ANALYZE tickets"))  # stale statistics would test autovacuum timing, not the index
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        await conn.execute(text("SET LOCAL enable_sort = off"))
        await conn.execute(text("SET LOCAL enable_bitmapscan = off"))
        node = await plan(conn, ticket_page_statement(where, page, staff=True))

    assert index in index_names(node)
    assert '"Sort"' not in str(node).replace("'", '"')


async def test_title_search_uses_the_trigram_index(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        await conn.execute(text("SET LOCAL enable_indexscan = off"))
        node = await plan(conn, ticket_page_statement(TicketFilter(title_contains="printer", include_deleted=True),
                                                      PageRequest("created", True, None, 25), staff=True))

    assert "ix_tickets_title_trgm" in index_names(node)


async def test_history_and_thread_ignore_a_missing_ticket(engine: AsyncEngine) -> None:
    agent = Actor(uuid.uuid4(), Role.AGENT)
    for kind in TICKET_QUERIES.values():
        assert await ask(engine, agent, query(agent, kind, ticket_id=uuid.uuid4())) == NF


async def test_the_query_pool_is_read_only_and_its_own(database_url: str) -> None:
    import asyncpg

    from service.adapters.read_models import read_pool
    from service.app import _asyncpg_dsn

    pool = await read_pool(_asyncpg_dsn(database_url), pool_size=2)
    try:
        async with reading(pool) as reads, reading(pool) as second:
            conn = reads._conn  # the asyncpg connection its statements run on
            assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await conn.execute("CREATE TEMP TABLE nope (x int)")
            assert second._conn is not conn
            with pytest.raises(asyncio.TimeoutError):  # two connections and no more
                await pool.acquire(timeout=0.2)
        assert pool.get_max_size() == 2
    finally:
        await pool.close()


async def test_a_query_connection_goes_back_to_its_pool_without_a_reset_and_out_of_any_transaction(
        database_url: str) -> None:
    from service.adapters.read_models import read_pool
    from service.app import _asyncpg_dsn

    pool = await read_pool(_asyncpg_dsn(database_url), pool_size=1)
    statements: list[str] = []
    try:
        with pytest.raises(RuntimeError):
            async with reading(pool) as reads:
                reads._conn.add_query_logger(lambda record: statements.append(record.query))
                await reads._conn.execute("BEGIN READ ONLY")
                raise RuntimeError("a bug, with the transaction open")
        assert "ROLLBACK" in statements and not any("RESET ALL" in s for s in statements)
        async with reading(pool) as reads:
            assert not reads._conn.is_in_transaction()
    finally:
        await pool.close()


async def test_a_first_page_and_its_count_come_from_one_statement(engine: AsyncEngine, shelf: Shelf) -> None:
    """Counted in the page's own statement (one snapshot): after the EXPLAIN, one round trip."""
    statements: list[str] = []
    async with reading(engine) as reads:
        reads._conn.add_query_logger(lambda record: statements.append(record.query))
        views, total = await reads.tickets(TicketFilter(customer_id=shelf.customer.customer_id),
                                           PageRequest("created", True, None, 3), staff=False, count_cap=10)
    assert len(views) == 4 and total == Total(10, exact=True)
    assert [s.split()[0] for s in statements] == ["EXPLAIN", "SELECT"]


async def test_a_connection_that_broke_during_a_query_is_not_handed_out_again(engine: AsyncEngine,
                                                                            database_url: str) -> None:
    import asyncpg

    from service.adapters.read_models import read_pool
    from service.adapters.retry import is_transient
    from service.app import _asyncpg_dsn

    pool = await read_pool(_asyncpg_dsn(database_url), pool_size=2)
    try:
        for source, size in ((engine, engine.pool.size()), (pool, 2)):  # tooling's engine, the service's pool
            with pytest.raises(asyncpg.ConnectionDoesNotExistError) as raised:
                async with reading(source) as reads:
                    broken = await reads._conn.fetchval("SELECT pg_backend_pid()")
                    async with engine.connect() as other:
                        assert await other.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": broken})
                    await reads._conn.fetchval("SELECT 1")
            assert is_transient(raised.value)  # the query is retried, on another connection
            for _ in range(size + 1):  # every pooled connection, the broken one included
                async with reading(source) as reads:
                    assert await reads._conn.fetchval("SELECT pg_backend_pid()") != broken
    finally:
        await pool.close()
