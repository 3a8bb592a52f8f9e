"""The read model on PostgreSQL: SQLAlchemy Core selects straight into contract views.

Each query runs in one read-only REPEATABLE READ transaction (:func:`reading`), so a page and its
count, or a ticket and its thread, come from the same snapshot. Which rows an actor may see is
decided by the handlers (:mod:`service.handlers.queries`) and arrives here as a TicketFilter.

Indexes serving these statements: migrations/versions/2026_11_25_a2fdac6c3948_query_indexes.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    Text,
    any_,
    bindparam,
    cast,
    func,
    literal,
    null,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, REGCONFIG, UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from ticket_contracts.answers import HistoryEntry, SearchItem
from ticket_contracts.views import ReplyView, TicketView, TimeEntryView

from service.handlers.read_model import SORT_KEYS, PageRequest, SortKey, TicketFilter, Total

from . import tables
from .explain import limited_input, plan
from .rows import attachment_from_row

t, r, te, ev, at = tables.tickets, tables.replies, tables.time_entries, tables.ticket_events, tables.attachments
s = tables.ticket_search

#: The most planner cost units a count may take. A capped count of 10,001 entries of a partial index
#: (index-only) costs ~800; a count that must read thousands of heap pages costs far more and gets
#: the estimate instead: a few milliseconds of work at most, whatever the filters.
COUNT_COST_BUDGET = 2_000.0

_VIEW_FIELDS = [name for name in TicketView.model_fields if name not in ("time_spent_minutes", "attachments")]
_STAFF_COLUMNS = [t.c[name] for name in _VIEW_FIELDS] + [t.c.time_spent_minutes]
#: Customers never get time spent: the column is not even read.
_CUSTOMER_COLUMNS = [t.c[name] for name in _VIEW_FIELDS] + [null().label("time_spent_minutes")]
_TEXT_ARRAY = ARRAY(tables.Text())
_UUID_ARRAY = ARRAY(UUID(as_uuid=True))

#: The text search configuration when none is given (TICKETS_SEARCH_TEXT_CONFIG's default).
DEFAULT_SEARCH_CONFIG = "english"
#: ts_headline reads at most this many characters of a ticket (title, description, then up to
#: SNIPPET_REPLIES replies of SNIPPET_REPLY_CHARS each, in thread order): snippets cost the same on
#: a ticket with a thousand replies as on one with three.
SNIPPET_SOURCE_CHARS = 20_000
SNIPPET_REPLIES = 50
SNIPPET_REPLY_CHARS = 4_000
SNIPPET_OPTIONS = ("StartSel=<mark>, StopSel=</mark>, MaxFragments=2, MaxWords=20, MinWords=6, "
                   "FragmentDelimiter=\" … \"")


@asynccontextmanager
async def reading(engine: AsyncEngine, search_config: str = DEFAULT_SEARCH_CONFIG) -> AsyncIterator[SqlTicketReads]:
    """A read model on one connection, in a read-only snapshot (REPEATABLE READ)."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        async with conn.begin():
            yield SqlTicketReads(conn, search_config)


async def check_search_config(engine: AsyncEngine, config: str) -> None:
    """Refuse to start with a text search configuration PostgreSQL does not have (every write of
    a ticket's text would fail otherwise)."""
    async with engine.connect() as conn:
        found = await conn.scalar(text(
            "SELECT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = split_part(:config, '.', -1))"), {"config": config})
    if not found:
        raise ValueError(f"TICKETS_SEARCH_TEXT_CONFIG: PostgreSQL has no text search configuration {config!r}")


class SqlTicketReads:
    def __init__(self, conn: AsyncConnection, search_config: str = DEFAULT_SEARCH_CONFIG) -> None:
        self._conn = conn
        self._search_config = search_config

    async def ticket(self, ticket_id: uuid.UUID, *, staff: bool) -> TicketView | None:
        row = (await self._conn.execute(select(*_columns(staff)).where(t.c.id == ticket_id))).first()
        return (await self._with_attachments([row], staff=staff))[0] if row else None

    async def tickets(self, where: TicketFilter, page: PageRequest, *, staff: bool) -> list[TicketView]:
        stmt = ticket_page_statement(where, page, staff=staff)
        return await self._with_attachments(list(await self._conn.execute(stmt)), staff=staff)

    async def _with_attachments(self, rows: list[Any], *, staff: bool) -> list[TicketView]:
        """Ticket views with their descriptions' attachments (one more statement for all of them)."""
        ids = [row.id for row in rows]
        found = await self._attachments(at.c.ticket_id == any_(bindparam("ids", ids, type_=_UUID_ARRAY)),
                                        at.c.reply_id.is_(None), staff=staff, key="ticket_id") if ids else {}
        return [TicketView.model_validate(dict(row._mapping) | {"attachments": found.get(row.id, [])})
                for row in rows]

    async def _attachments(self, *where: ColumnElement[bool], staff: bool, key: str) -> dict[uuid.UUID, list[Any]]:
        """Attachment views grouped by ``key`` (ticket_id or reply_id), oldest first. A customer never
        gets an internal note's attachment, nor the uri of one that is not scanned clean."""
        stmt = select(at).where(*where)
        if not staff:
            stmt = stmt.where(at.c.internal.is_(False))
        grouped: dict[uuid.UUID, list[Any]] = {}
        for row in await self._conn.execute(stmt.order_by(at.c.created_at, at.c.id)):
            grouped.setdefault(row._mapping[key], []).append(attachment_from_row(row).view(show_uri=staff))
        return grouped

    async def count(self, where: TicketFilter, cap: int) -> Total:
        """Exact up to ``cap`` when counting is cheap; otherwise the planner's estimate.

        1. EXPLAIN (plan only, nothing runs) the capped count ``SELECT count(*) FROM (SELECT 1 …
           LIMIT cap + 1)``: its total cost, and the rows expected under the LIMIT (the estimate).
        2. If that cost is over COUNT_COST_BUDGET, answer the estimate (``exact=False``).
        3. Otherwise run it. At most ``cap`` rows: the exact total. More: the larger of the
           estimate and ``cap + 1``, ``exact=False``.
        """
        return await self._count(select(literal(1)).select_from(t).where(*conditions(where)), cap)

    async def search(self, where: TicketFilter, text: str, after: SortKey | None, limit: int, *,
                     staff: bool) -> list[SearchItem]:
        """Up to ``limit + 1`` matches, newest first, after ``after`` (created_at, id)."""
        await self._custom_plans()
        stmt = search_statement(where, text, after, limit, staff=staff, config=self._search_config)
        return [SearchItem.model_validate(dict(row._mapping)) for row in await self._conn.execute(stmt)]

    async def search_count(self, where: TicketFilter, text: str, cap: int, *, staff: bool) -> Total:
        """Like :meth:`count`, for the matches of a search."""
        await self._custom_plans()
        source, matches, _ = _matching(where, _tsquery(text, self._search_config), staff=staff)
        return await self._count(select(literal(1)).select_from(source).where(*matches), cap)

    async def _custom_plans(self) -> None:
        """Plan every search statement for its own words: a generic plan (which asyncpg's prepared
        statements get after five runs) cannot tell a rare word from a common one."""
        await self._conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))

    async def _count(self, matching: Select[Any], cap: int) -> Total:
        capped = select(func.count()).select_from(matching.limit(cap + 1).subquery())
        node = await plan(self._conn, capped)
        below = limited_input(node)
        estimate = int(below["Plan Rows"]) if below is not None else 0
        if node["Total Cost"] > COUNT_COST_BUDGET:
            return Total(estimate, exact=False)
        counted = await self._conn.scalar(capped)
        if counted is not None and counted <= cap:
            return Total(counted, exact=True)
        return Total(max(estimate, cap + 1), exact=False)

    async def replies(self, ticket_id: uuid.UUID, *, internal: bool, after: SortKey | None,
                      limit: int) -> list[ReplyView]:
        stmt = select(r).where(r.c.ticket_id == ticket_id)
        if not internal:
            stmt = stmt.where(r.c.internal.is_(False))
        if after is not None:
            stmt = stmt.where(_beyond([r.c.created_at, r.c.id], after, descending=False))
        stmt = stmt.order_by(r.c.created_at, r.c.id).limit(limit + 1)
        rows = list(await self._conn.execute(stmt))
        ids = [row.id for row in rows]
        found = await self._attachments(at.c.reply_id == any_(bindparam("ids", ids, type_=_UUID_ARRAY)),
                                        staff=internal, key="reply_id") if ids else {}
        return [ReplyView.model_validate(dict(row._mapping) | {"attachments": found.get(row.id, [])}) for row in rows]

    async def history(self, ticket_id: uuid.UUID, after_version: int, limit: int) -> list[HistoryEntry]:
        stmt = (select(ev.c.body).where(ev.c.ticket_id == ticket_id, ev.c.ticket_version > after_version)
                .order_by(ev.c.ticket_version).limit(limit + 1))
        return [_history_entry(body) for body in (await self._conn.execute(stmt)).scalars()]

    async def time_entries(self, ticket_id: uuid.UUID) -> list[TimeEntryView]:
        stmt = select(te).where(te.c.ticket_id == ticket_id).order_by(te.c.created_at, te.c.id)
        return [TimeEntryView.model_validate(dict(row._mapping)) for row in await self._conn.execute(stmt)]


def conditions(w: TicketFilter) -> list[ColumnElement[bool]]:
    """The WHERE clause of a ticket filter (public for the benchmark's EXPLAINs)."""
    where: list[ColumnElement[bool]] = []
    if not w.include_deleted:
        where.append(t.c.deleted_at.is_(None))
    if w.customer_id is not None:
        where.append(t.c.customer_id == w.customer_id)
    if w.unassigned:
        where.append(t.c.assignee_id.is_(None))
    elif w.assignee_id is not None:
        where.append(t.c.assignee_id == w.assignee_id)
    if w.statuses:
        where.append(_one_of(t.c.status, w.statuses))
    if w.priorities:
        where.append(_one_of(t.c.priority, w.priorities))
    if w.category_id is not None:
        where.append(t.c.category_id == w.category_id)
    if w.created_from is not None:
        where.append(t.c.created_at >= w.created_from)
    if w.created_to is not None:
        where.append(t.c.created_at < w.created_to)
    if w.title_contains:
        where.append(t.c.title.ilike(f"%{_escape_like(w.title_contains)}%", escape="\\"))
    return where


def ticket_page_statement(where: TicketFilter, page: PageRequest, *, staff: bool) -> Select[Any]:
    """The statement :meth:`SqlTicketReads.tickets` runs (for EXPLAIN in tests and benchmarks)."""
    keys = [t.c[name] for name in SORT_KEYS[page.sort]]
    stmt = select(*_columns(staff)).where(*conditions(where))
    if page.after is not None:
        stmt = stmt.where(_beyond(keys, page.after, page.descending))
    return stmt.order_by(*(k.desc() if page.descending else k.asc() for k in keys)).limit(page.limit + 1)


def search_statement(where: TicketFilter, text: str, after: SortKey | None, limit: int, *, staff: bool,
                     config: str = DEFAULT_SEARCH_CONFIG) -> Select[Any]:
    """The statement :meth:`SqlTicketReads.search` runs (public for EXPLAIN in tests and benchmarks).

    Staff match ``staff_doc``; everyone else ``public_doc``, which holds no internal note — so the
    match, the rank and the snippet of a customer's search cannot depend on one. Newest first by
    (created_at, id), which never change: a keyset walk is stable under concurrent writes. The
    matches are found and ordered on ``ticket_search`` alone when the filters allow it
    (:func:`_matching`); ``tickets`` is then read for the page's rows only, and rank and snippet are
    computed for those.
    """
    query = _tsquery(text, config)
    source, matches, keys = _matching(where, query, staff=staff)
    found = (select(keys[0].label("created_at"), keys[1].label("ticket_id"), _document(staff).label("doc"))
             .select_from(source).where(*matches))
    if after is not None:
        found = found.where(_beyond(keys, after, descending=True))
    found_page = found.order_by(keys[0].desc(), keys[1].desc()).limit(limit + 1).subquery("found")
    hits = (select(*_columns(staff), func.ts_rank(found_page.c.doc, query).label("rank"))
            .select_from(found_page.join(t, t.c.id == found_page.c.ticket_id)).subquery("hits"))
    replies = (select(func.left(r.c.body, SNIPPET_REPLY_CHARS).label("body"))
               .where(r.c.ticket_id == hits.c.id, *([] if staff else [r.c.internal.is_(False)]))
               .order_by(r.c.created_at, r.c.id).limit(SNIPPET_REPLIES).correlate(hits).subquery("thread"))
    thread = select(func.string_agg(replies.c.body, literal("\n"))).scalar_subquery()
    source_text = func.left(func.concat_ws("\n", hits.c.title, hits.c.description, thread), SNIPPET_SOURCE_CHARS)
    snippet = func.ts_headline(_regconfig(config), _html_escaped(source_text), _tsquery(text, config),
                               literal(SNIPPET_OPTIONS))
    return (select(*(hits.c[c.key] for c in _columns(staff)), cast(hits.c.rank, Float).label("rank"),
                   snippet.label("snippet"))
            .order_by(hits.c.created_at.desc(), hits.c.id.desc()))


def _matching(where: TicketFilter, query: ColumnElement[Any], *, staff: bool,
              ) -> tuple[Any, list[ColumnElement[bool]], list[Any]]:
    """The FROM, WHERE and (created_at, id) sort keys of a search's matches.

    ``ticket_search`` has copies of the ticket's ``created_at``, ``customer_id`` and ``deleted_at``
    (migration d6420cf6a748). A search filtered by those only is answered on that table: walked
    newest first on ``ix_ticket_search_created`` (a customer's on ``ix_ticket_search_customer_created``)
    checking each document, or its GIN matches sorted there — no ``tickets`` row is read for a ticket
    that does not make the page. A filter on anything else (status, priority, assignee, category,
    title) is answered on ``tickets`` joined with the documents, sorted by the ticket's columns (their
    indexes yield the filtered tickets newest first). Both orders are the same (equal values)."""
    match = _document(staff).bool_op("@@")(query)
    if where.assignee_id is None and not (where.unassigned or where.statuses or where.priorities
                                          or where.category_id is not None or where.title_contains):
        on_documents: list[ColumnElement[bool]] = [match]
        if not where.include_deleted:
            on_documents.append(s.c.deleted_at.is_(None))
        if where.customer_id is not None:
            on_documents.append(s.c.customer_id == where.customer_id)
        if where.created_from is not None:
            on_documents.append(s.c.created_at >= where.created_from)
        if where.created_to is not None:
            on_documents.append(s.c.created_at < where.created_to)
        return s, on_documents, [s.c.created_at, s.c.ticket_id]
    return t.join(s, s.c.ticket_id == t.c.id), [*conditions(where), match], [t.c.created_at, t.c.id]


def _tsquery(text: str, config: str) -> ColumnElement[Any]:
    return func.websearch_to_tsquery(_regconfig(config), literal(text, Text))


def _regconfig(config: str) -> ColumnElement[Any]:
    """The configuration as a ``regconfig`` parameter (``$n::REGCONFIG``), a constant of the plan: then
    ``websearch_to_tsquery`` is immutable and folded into one ``tsquery`` when planned. Cast from
    text (``CAST($n::VARCHAR AS REGCONFIG)``, a stable lookup) it was evaluated again for every row a
    walk checks — a third of a phrase walk's time."""
    return literal(config, REGCONFIG)


def _document(staff: bool) -> Any:
    return s.c.staff_doc if staff else s.c.public_doc


def _html_escaped(value: Any) -> Any:
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;")):
        value = func.replace(value, char, entity)
    return value


def _columns(staff: bool) -> list[Any]:
    return _STAFF_COLUMNS if staff else _CUSTOMER_COLUMNS


def _beyond(keys: list[Any], after: SortKey, descending: bool) -> ColumnElement[bool]:
    """Rows strictly after ``after`` in the sort: one row-value comparison, one index range."""
    position = tuple_(*(bindparam(None, value, type_=key.type) for key, value in zip(keys, after, strict=True)))
    return tuple_(*keys) < position if descending else tuple_(*keys) > position


def _one_of(column: Any, values: tuple[str, ...]) -> ColumnElement[bool]:
    """``=`` for one value (an index on the column then also yields its order), else ``= ANY``."""
    if len(values) == 1:
        return column == values[0]  # type: ignore[no-any-return]
    return column == any_(bindparam(None, list(values), type_=_TEXT_ARRAY))  # type: ignore[no-any-return]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _history_entry(body: str) -> HistoryEntry:
    event = json.loads(body)
    return HistoryEntry(
        event_id=event["event_id"], type=event["type"], ticket_version=event["ticket_version"],
        occurred_at=event["occurred_at"], actor=event["actor"], internal=event["internal"],
        payload=event["payload"],
    )
