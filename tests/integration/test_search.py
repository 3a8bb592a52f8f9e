"""``ticket.search`` on real PostgreSQL: the visibility matrix, internal notes that must not change a
customer's answer in any way, snippets, filters, keyset walks under concurrent writes, the triggers
that keep the documents current, and the plans.

Every test plants its own random words, so tickets of other tests in the shared database never match.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from ticket_contracts import commands as c
from ticket_contracts import queries as q
from ticket_contracts.answers import SearchAnswer

from service.adapters.explain import index_names, plan
from service.adapters.read_models import reading, search_statement
from service.domain.values import Actor, Role
from service.handlers.read_model import TicketFilter
from tests.integration.test_read_models import add_staff, ask, create, customer, query, run


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


def word() -> str:
    """A word no other ticket holds (letters and digits: the parser keeps it whole, unstemmed)."""
    return "w" + uuid.uuid4().hex[:12]


def reply(ticket_id: uuid.UUID, body: str, internal: bool = False) -> tuple[type[c.CommandBase], dict[str, Any]]:
    return c.AddReply, {"ticket_id": ticket_id, "reply_id": uuid.uuid4(), "body": body, "internal": internal}


async def search(engine: AsyncEngine, actor: Actor, words: str, **payload: Any) -> SearchAnswer | str:
    result = await ask(engine, actor, query(actor, q.SearchTickets, text=words, **payload))
    assert isinstance(result, SearchAnswer | str), result
    return result


def ids(result: SearchAnswer | str) -> set[uuid.UUID] | str:
    return result if isinstance(result, str) else {i.id for i in result.items}


# ---- the visibility matrix ----------------------------------------------------------------------


@dataclass
class World:
    alice: Actor
    bob: Actor
    agent: Actor
    admin: Actor
    system: Actor
    t: dict[str, uuid.UUID]
    public: str  # in a public reply of own, own_quiet, foreign and deleted
    secret: str  # only in internal notes of own, foreign and deleted
    titled: str  # in the title of own


@pytest.fixture(scope="module")
async def world(engine: AsyncEngine) -> World:
    alice, bob = customer(), customer()
    agent, admin = await add_staff(engine, Role.AGENT), await add_staff(engine, Role.ADMIN)
    public, secret, titled = word(), word(), word()
    t = {name: uuid.uuid4() for name in ("own", "own_quiet", "foreign", "deleted")}
    await run(engine, alice, create(t["own"], title=f"Printer {titled}"), create(t["own_quiet"]), create(t["deleted"]))
    await run(engine, bob, create(t["foreign"]))
    for name in t:
        await run(engine, agent, reply(t[name], f"Please restart it, {public} helps"))
        if name != "own_quiet":
            await run(engine, agent, reply(t[name], f"Customer is difficult {secret}", internal=True))
    await run(engine, admin, (c.DeleteTicket, {"ticket_id": t["deleted"], "reason": "spam"}))
    return World(alice, bob, agent, admin, Actor(uuid.uuid4(), Role.SYSTEM), t, public, secret, titled)


OK = "ok"
#: role → search → the tickets found (or the reason code of the error answer).
MATRIX: dict[str, dict[str, Any]] = {
    "customer": {"public": {"own", "own_quiet"}, "secret": set(), "public AND secret": set(),
                 "public OR secret": {"own", "own_quiet"}, "public -secret": {"own", "own_quiet"},
                 "title": {"own"}, "public, deleted too": "forbidden", "bob's customer": "forbidden"},
    "agent": {"public": {"own", "own_quiet", "foreign"}, "secret": {"own", "foreign"},
              "public AND secret": {"own", "foreign"}, "public OR secret": {"own", "own_quiet", "foreign"},
              "public -secret": {"own_quiet"}, "title": {"own"}, "public, deleted too": "forbidden",
              "bob's customer": {"foreign"}},
    "admin": {"public": {"own", "own_quiet", "foreign"}, "secret": {"own", "foreign"},
              "public AND secret": {"own", "foreign"}, "public OR secret": {"own", "own_quiet", "foreign"},
              "public -secret": {"own_quiet"}, "title": {"own"},
              "public, deleted too": {"own", "own_quiet", "foreign", "deleted"}, "bob's customer": {"foreign"}},
    "system": dict.fromkeys(("public", "secret", "public AND secret", "public OR secret", "public -secret", "title",
                             "public, deleted too", "bob's customer"), "forbidden"),
}


def search_of(w: World, name: str) -> tuple[str, dict[str, Any]]:
    return {
        "public": (w.public, {}), "secret": (w.secret, {}), "public AND secret": (f"{w.public} {w.secret}", {}),
        "public OR secret": (f"{w.public} or {w.secret}", {}), "public -secret": (f"{w.public} -{w.secret}", {}),
        "title": (w.titled, {}), "public, deleted too": (w.public, {"include_deleted": True}),
        "bob's customer": (w.public, {"customer_id": w.bob.customer_id}),
    }[name]


@pytest.mark.parametrize(("role", "name"), [(role, name) for role, row in MATRIX.items() for name in row])
async def test_search_visibility_matrix(engine: AsyncEngine, world: World, role: str, name: str) -> None:
    actor = {"customer": world.alice, "agent": world.agent, "admin": world.admin, "system": world.system}[role]
    words, extra = search_of(world, name)

    result = await search(engine, actor, words, **extra)

    expected = MATRIX[role][name]
    want = expected if isinstance(expected, str) else {world.t[n] for n in expected}
    assert ids(result) == want
    if isinstance(result, SearchAnswer):
        assert result.total == len(want) and result.total_exact and result.next_cursor is None
        raw = result.model_dump_json()
        if role == "customer":
            assert world.secret not in raw
        assert all((i.time_spent_minutes is None) == (role == "customer") for i in result.items)


# ---- internal notes change nothing in a customer's answer ---------------------------------------


async def test_internal_notes_change_no_rank_snippet_order_or_total_for_a_customer(engine: AsyncEngine) -> None:
    """Twin tickets with the same public words; one also has internal notes full of the searched
    word and of others. For the customer both must look exactly alike; staff see the difference."""
    me, agent, needle, other = customer(), await add_staff(engine, Role.AGENT), word(), word()
    plain, noted = uuid.uuid4(), uuid.uuid4()
    for tid in (plain, noted):  # one batch each; noted is the newer ticket
        await run(engine, me, create(tid, title=f"Scanner {needle}", description=f"The scanner {needle} jams"))
        await run(engine, agent, reply(tid, f"Try the {needle} tray"))
    await run(engine, agent, reply(noted, f"{needle} {needle} {needle} {other} internal only", internal=True),
              reply(noted, f"more {needle} notes", internal=True))

    for words in (needle, f'"{needle} tray"', f"{needle} -{other}", f"{needle} or {other}"):
        result = await search(engine, me, words)
        assert isinstance(result, SearchAnswer), words
        assert [i.id for i in result.items] == [noted, plain] and result.total == 2, words
        twin, single = result.items
        assert twin.rank == single.rank and twin.snippet == single.snippet, words
        assert other not in twin.snippet and "internal" not in twin.snippet

    staff = await search(engine, agent, needle)
    assert isinstance(staff, SearchAnswer)
    by_id = {i.id: i for i in staff.items}
    assert by_id[noted].rank != by_id[plain].rank  # the notes count for staff
    assert ids(await search(engine, agent, f"{needle} -{other}")) == {plain}
    assert ids(await search(engine, me, other)) == set()


async def test_snippets_highlight_the_match_and_escape_html(engine: AsyncEngine) -> None:
    me, needle = customer(), word()
    tid = uuid.uuid4()
    await run(engine, me, create(tid, title="Broken <script>alert(1)</script> & co",
                                 description=f"Long story. The <b>{needle}</b> & co is broken since Monday."))

    result = await search(engine, me, needle)

    assert isinstance(result, SearchAnswer)
    [item] = result.items
    assert f"<mark>{needle}</mark>" in item.snippet
    unmarked = item.snippet.replace("<mark>", "").replace("</mark>", "")
    assert "<" not in unmarked and ">" not in unmarked
    assert "&lt;b&gt;" in item.snippet and "&amp; co" in item.snippet
    assert item.rank > 0 and item.title.startswith("Broken <script>")  # the view itself is unchanged


async def test_search_takes_the_filters_of_ticket_list(engine: AsyncEngine) -> None:
    me, agent, needle = customer(), await add_staff(engine, Role.AGENT), word()
    urgent, low, other = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await run(engine, me, create(urgent, title=f"A {needle}", priority="urgent"),
              create(low, title=f"B {needle}", priority="low"), create(other, title="no match"))
    await run(engine, agent, (c.AssignTicket, {"ticket_id": low, "assignee_id": agent.user_id}),
              (c.ChangeStatus, {"ticket_id": low, "status": "in_progress"}))

    assert ids(await search(engine, me, needle, priority=["urgent"])) == {urgent}
    assert ids(await search(engine, agent, needle, status=["in_progress"])) == {low}
    assert ids(await search(engine, agent, needle, assignee_id=agent.user_id)) == {low}
    assert ids(await search(engine, agent, needle, unassigned=True, customer_id=me.customer_id)) == {urgent}
    assert await search(engine, agent, needle, unassigned=True, assignee_id=agent.user_id) == "validation_error"


async def test_a_search_of_stop_words_only_finds_nothing(engine: AsyncEngine) -> None:
    result = await search(engine, customer(), "the and of")

    assert isinstance(result, SearchAnswer) and result.items == [] and result.total == 0


# ---- pages --------------------------------------------------------------------------------------


async def walk(engine: AsyncEngine, actor: Actor, words: str, between_pages: Any = None, **payload: Any
               ) -> list[Any]:
    items, cursor, totals = [], None, set()
    for _ in range(100):
        page = await search(engine, actor, words, page_size=4, cursor=cursor, **payload)
        assert isinstance(page, SearchAnswer), page
        items += page.items
        totals.add(page.total)
        if (cursor := page.next_cursor) is None:
            assert len(totals) == 1  # every page repeats the first page's total
            return items
        if between_pages is not None:
            await between_pages()
    raise AssertionError("the walk did not end")


async def test_walking_all_pages_sees_every_match_once_while_tickets_are_written(engine: AsyncEngine) -> None:
    """New matching tickets, new matching replies on old tickets (their rank changes) and replies
    that make older tickets match appear during the walk: nothing is seen twice, nothing that
    matched at the start is missed."""
    me, agent, needle = customer(), await add_staff(engine, Role.AGENT), word()
    matching = [uuid.uuid4() for _ in range(13)]
    late = [uuid.uuid4() for _ in range(4)]  # match only once a reply arrives mid-walk
    for tid in matching:
        await run(engine, me, create(tid, title=f"Ticket {needle}"))
    await run(engine, me, *(create(tid, title="nothing yet") for tid in late))
    created: list[uuid.UUID] = []

    async def write() -> None:
        new = uuid.uuid4()
        created.append(new)
        await run(engine, me, create(new, title=f"New {needle}"))
        await run(engine, agent, reply(matching[len(created)], f"{needle} {needle} again"),
                  reply(late[len(created) % len(late)], f"now {needle}"))

    for actor, scope in ((me, {}), (agent, {"customer_id": me.customer_id})):
        seen = [i.id for i in await walk(engine, actor, needle, between_pages=write, **scope)]
        assert len(seen) == len(set(seen)), "a ticket appeared twice"
        assert set(matching) <= set(seen), "a ticket that matched at the start was missed"
        assert set(seen) <= set(matching) | set(late) | set(created)
        keys = [(i.created_at, i.id) for i in await walk(engine, actor, needle, **scope)]
        assert keys == sorted(keys, reverse=True)
    assert created


async def test_a_cursor_only_continues_the_search_it_came_from(engine: AsyncEngine) -> None:
    me, needle = customer(), word()
    await run(engine, me, *(create(uuid.uuid4(), title=f"T {needle}") for _ in range(5)))
    first = await search(engine, me, needle, page_size=2)
    assert isinstance(first, SearchAnswer) and first.next_cursor and first.total == 5

    assert await search(engine, me, word(), cursor=first.next_cursor) == "validation_error"
    assert await search(engine, customer(), needle, cursor=first.next_cursor) == "validation_error"
    assert await search(engine, me, needle, priority=["low"], cursor=first.next_cursor) == "validation_error"
    listing = await ask(engine, me, query(me, q.ListTickets, cursor=first.next_cursor))
    assert listing == "validation_error"


# ---- the documents follow the text --------------------------------------------------------------


async def test_edits_and_replies_update_the_documents(engine: AsyncEngine) -> None:
    me, agent, before, after, later = customer(), await add_staff(engine, Role.AGENT), word(), word(), word()
    tid = uuid.uuid4()
    await run(engine, me, create(tid, title=f"Title {before}"))
    await run(engine, me, reply(tid, f"customer says {later}"))
    await run(engine, me, (c.UpdateTicket, {"ticket_id": tid, "title": f"Title {after}"}))

    assert ids(await search(engine, me, before)) == set()
    assert ids(await search(engine, me, after)) == {tid}
    assert ids(await search(engine, me, later)) == {tid}  # the rebuild after the edit kept the reply
    async with engine.begin() as conn:  # what a redaction does to a reply body
        await conn.execute(text("UPDATE replies SET body = '[redacted]' WHERE ticket_id = :t"), {"t": tid})
    assert ids(await search(engine, me, later)) == set()
    assert ids(await search(engine, agent, later)) == set()


async def test_a_huge_thread_stops_growing_its_document_and_keeps_working(engine: AsyncEngine) -> None:
    me, agent, needle = customer(), await add_staff(engine, Role.AGENT), word()
    tid = uuid.uuid4()
    await run(engine, me, create(tid, title=f"Logs {needle}"))
    noise = " ".join(uuid.uuid4().hex for _ in range(1400))  # ~46,000 characters of unique words
    for _ in range(3):
        await run(engine, agent, *(reply(tid, noise[: 49_000] + f" x{n}") for n in range(10)))

    async with engine.connect() as conn:
        size = await conn.scalar(text("SELECT pg_column_size(staff_doc) FROM ticket_search WHERE ticket_id = :t"),
                                 {"t": tid})
    assert size < 1_000_000
    assert ids(await search(engine, me, needle)) == {tid}


async def test_the_documents_copy_the_tickets_order_scope_and_deletion(engine: AsyncEngine) -> None:
    """created_at, customer_id and deleted_at of ticket_search equal the ticket's through create,
    delete and restore (the walks and sorts on ticket_search rely on them), whoever writes them."""
    me, admin, needle = customer(), await add_staff(engine, Role.ADMIN), word()
    tid = uuid.uuid4()
    await run(engine, me, create(tid, title=f"Copy {needle}"))

    async def copies_equal() -> bool:
        async with engine.connect() as conn:
            return bool(await conn.scalar(text(
                "SELECT (s.created_at, s.customer_id, s.deleted_at) IS NOT DISTINCT FROM "
                "(t.created_at, t.customer_id, t.deleted_at) FROM tickets t JOIN ticket_search s ON s.ticket_id = t.id "
                "WHERE t.id = :t"), {"t": tid}))

    assert await copies_equal()
    await run(engine, admin, (c.DeleteTicket, {"ticket_id": tid, "reason": "spam"}))
    assert await copies_equal()
    assert ids(await search(engine, admin, needle)) == set()
    assert ids(await search(engine, admin, needle, include_deleted=True)) == {tid}
    await run(engine, admin, (c.RestoreTicket, {"ticket_id": tid}))
    assert await copies_equal() and ids(await search(engine, me, needle)) == {tid}
    async with engine.begin() as conn:  # another writer moving the ticket (the service never does)
        await conn.execute(text("UPDATE tickets SET created_at = created_at - interval '1 day', "
                                "customer_id = gen_random_uuid() WHERE id = :t"), {"t": tid})
    assert await copies_equal() and ids(await search(engine, me, needle)) == set()


@pytest.mark.parametrize(("config", "found"), [("english", True), ("pg_catalog.english", True), ("simple", False)])
async def test_the_search_reads_with_its_text_configuration(engine: AsyncEngine, config: str, found: bool) -> None:
    """The configuration reaches the query as a regconfig parameter: the documents are English
    ('printing' stored as 'print'), so an unstemmed 'simple' query of 'printing' misses."""
    me, needle = customer(), word()
    tid = uuid.uuid4()
    await run(engine, me, create(tid, title=f"{needle} printing"))

    async with reading(engine, config) as reads:
        items = await reads.search(TicketFilter(customer_id=me.customer_id), f"{needle} printing", None, 20,
                                   staff=False)
    assert [i.id for i in items] == ([tid] if found else [])


# ---- plans --------------------------------------------------------------------------------------


@pytest.mark.parametrize("staff", [False, True])
async def test_a_search_uses_its_gin_index(engine: AsyncEngine, staff: bool) -> None:
    """With scans of whole tables or indexes priced out, the match must come from the right GIN
    index (the benchmark shows the planner's own choices on a million tickets)."""
    async with engine.connect() as conn:
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        await conn.execute(text("SET LOCAL enable_indexscan = off"))
        await conn.execute(text("SET LOCAL enable_indexonlyscan = off"))
        await conn.execute(text("SET LOCAL enable_nestloop = off"))
        node = await plan(conn, search_statement(TicketFilter(), "printer", None, 20, staff=staff))

    assert ("ix_ticket_search_staff" if staff else "ix_ticket_search_public") in index_names(node)
    assert ("ix_ticket_search_public" if staff else "ix_ticket_search_staff") not in index_names(node)


def _relations(node: dict[str, Any]) -> set[str]:
    found = {node["Relation Name"]} if "Relation Name" in node else set()
    for child in node.get("Plans", ()):
        found |= _relations(child)
    return found


def _limits(node: dict[str, Any]) -> list[dict[str, Any]]:
    return ([node] if node["Node Type"] == "Limit" else []) + [
        limit for child in node.get("Plans", ()) for limit in _limits(child)]


@pytest.mark.parametrize(("staff", "where", "on_documents"), [
    (True, TicketFilter(), True), (False, TicketFilter(customer_id=uuid.uuid4()), True),
    (True, TicketFilter(include_deleted=True, created_from=datetime(2026, 1, 1, tzinfo=UTC)), True),
    (True, TicketFilter(statuses=("open",)), False), (False, TicketFilter(priorities=("low", "high")), False)])
async def test_a_search_filtered_by_the_copies_only_finds_its_page_on_the_documents_alone(
    engine: AsyncEngine, staff: bool, where: TicketFilter, on_documents: bool,
) -> None:
    """Filtered by deletion, customer and creation time only, the matches are found, ordered and cut
    to the page on ticket_search: tickets is joined above the LIMIT, for the page's rows only,
    whatever plan the planner picks. Status, priority, … are on tickets only: it is read below."""
    async with engine.connect() as conn:
        await conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        node = await plan(conn, search_statement(where, "printer", None, 20, staff=staff), analyze=True)

    page = _limits(node)[0]
    assert "ticket_search" in _relations(page)
    assert ("tickets" not in _relations(page)) is on_documents
    assert "tickets" in _relations(node)
