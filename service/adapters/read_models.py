"""The read model on PostgreSQL: SQLAlchemy Core selects straight into contract views.

Answers are read with as few statements as they need, each its own snapshot, on connections of
their own pool whose every transaction is read-only (:func:`read_pool`). A first page and its
count are one statement (one snapshot), after an EXPLAIN that decides whether counting is cheap;
a later page, or a ticket, is one statement; attachments cost a statement only for the rows that
have some. A search (its page, then its count) runs in a transaction of its own, for the plan
setting it needs. Every statement is SQLAlchemy Core, sent with asyncpg on the pooled connection
itself (:mod:`.core_on_asyncpg`); rows are ``asyncpg.Record`` mappings. The statements of pages,
counts, tickets, threads and attachments are prepared shapes: built once per shape (which filters
are present, sort, staff), their values passed by name (``_filter_values``). Why: bench/README.md,
"Queries". Which rows an actor may see is
decided by the handlers (:mod:`service.handlers.queries`) and arrives here as a TicketFilter.

Indexes serving these statements: migrations/versions/2026_11_25_a2fdac6c3948_query_indexes.py.
"""

from __future__ import annotations

import json
import operator
import uuid
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    Text,
    any_,
    bindparam,
    cast,
    exists,
    func,
    literal,
    null,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, REGCONFIG, UUID
from sqlalchemy.ext.asyncio import AsyncEngine
from ticket_contracts.answers import HistoryEntry, SearchItem
from ticket_contracts.attachments import AttachmentView
from ticket_contracts.views import ReplyView, TicketView, TimeEntryView

from service.handlers.read_model import SORT_KEYS, PageRequest, SortKey, TicketAccess, TicketFilter, Total

from . import tables
from .core_on_asyncpg import STATEMENTS, Shaped
from .count_decisions import CountDecisions, decision_key
from .explain import Explain, limited_input, top_node
from .row_views import RowViews
from .rows import attachment_from_row

t, r, te, ev, at = tables.tickets, tables.replies, tables.time_entries, tables.ticket_events, tables.attachments
s = tables.ticket_search

#: The most planner cost units a count may take. A capped count of 10,001 entries of a partial index
#: (index-only) costs ~800; a count that must read thousands of heap pages costs far more and gets
#: the estimate instead: a few milliseconds of work at most, whatever the filters.
COUNT_COST_BUDGET = 2_000.0
#: Nor is a count run when the planner expects over this many times the cap: it would only
#: confirm "more than the cap" (~1 ms for 10,001 index entries), and the answer is inexact anyway.
COUNT_ESTIMATE_MARGIN = 1.5

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


#: What a read model reads from: the service's query pool (:func:`read_pool`), or an engine
#: (tests, tooling).
ReadSource: TypeAlias = "AsyncEngine | asyncpg.Pool"


async def read_pool(dsn: str, *, pool_size: int) -> asyncpg.Pool:
    """The query side's own pool, on asyncpg (``dsn``: an asyncpg DSN): ``pool_size`` connections
    and no more (the commands' pool is never drawn on), opened as needed, each with read-only
    transactions by default — a statement that would write fails, with or without an explicit
    transaction.

    asyncpg's own pool, not SQLAlchemy's: every statement of an answer already runs on the asyncpg
    connection (:mod:`.core_on_asyncpg`), and checking one out and in costs ~25 µs here against
    ~65 through SQLAlchemy's. A connection goes back without asyncpg's reset query (a round
    trip: RESET ALL, UNLISTEN, advisory unlocks), which undoes state these connections never
    take; asyncpg still rolls back a transaction left open, and closes a broken connection."""
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn, min_size=0, max_size=pool_size, reset=_keep_session,
        server_settings={"default_transaction_read_only": "on"},
    )
    return pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset query when a query connection goes back to its pool (see :func:`read_pool`)."""


@asynccontextmanager
async def reading(source: ReadSource, search_config: str = DEFAULT_SEARCH_CONFIG,
                  decisions: CountDecisions | None = None) -> AsyncIterator[SqlTicketReads]:
    """A read model on one pooled connection (of :func:`read_pool`, in the service); with
    ``decisions``, first pages reuse recent count decisions (:mod:`.count_decisions`; the service
    keeps one per process), else every first page EXPLAINs its count.

    It never begins a transaction to end (a search's own ends with it); a connection that broke
    meanwhile never goes back to its pool, and the error says so (``ConnectionDoesNotExistError``,
    a transient fault)."""
    if isinstance(source, asyncpg.Pool):
        async with source.acquire() as driver:  # a broken connection is closed on release, not pooled
            async with _lost_is_transient(driver):
                yield SqlTicketReads(driver, search_config, decisions)
        return
    async with source.connect() as conn:
        raw: asyncpg.Connection = (await conn.get_raw_connection()).driver_connection  # type: ignore[assignment]
        try:
            async with _lost_is_transient(raw):
                yield SqlTicketReads(raw, search_config, decisions)
        except asyncpg.ConnectionDoesNotExistError:
            await conn.invalidate()  # SQLAlchemy's pool must not hand it out again
            raise


def _closed(driver: asyncpg.Connection) -> bool:
    """Whether the connection is gone. A pool's connection that closed is released at once, its
    proxy detached: then every call on it (this one too) raises InterfaceError."""
    try:
        return driver.is_closed()
    except asyncpg.InterfaceError:
        return True


@asynccontextmanager
async def _lost_is_transient(driver: asyncpg.Connection) -> AsyncIterator[None]:
    try:
        yield
    except Exception as error:
        if not _closed(driver) or isinstance(error, asyncpg.ConnectionDoesNotExistError):
            raise
        # Whatever asyncpg raised (it may be an InternalClientError, when the server's goodbye
        # arrives as a statement starts): a lost connection, which the callers retry.
        raise asyncpg.ConnectionDoesNotExistError("the connection closed during the query") from error


async def check_search_config(engine: AsyncEngine, config: str) -> None:
    """Refuse to start with a text search configuration PostgreSQL does not have (every write of
    a ticket's text would fail otherwise)."""
    async with engine.connect() as conn:
        found = await conn.scalar(text(
            "SELECT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = split_part(:config, '.', -1))"), {"config": config})
    if not found:
        raise ValueError(f"TICKETS_SEARCH_TEXT_CONFIG: PostgreSQL has no text search configuration {config!r}")


class SqlTicketReads:
    def __init__(self, conn: asyncpg.Connection, search_config: str = DEFAULT_SEARCH_CONFIG,
                 decisions: CountDecisions | None = None) -> None:
        self._conn = conn
        self._search_config = search_config
        self._decisions = decisions

    async def ticket(self, ticket_id: uuid.UUID, *, staff: bool) -> TicketView | None:
        rows = await STATEMENTS.fetch_shaped(self._conn, Shaped(
            ("ticket", staff), lambda: _VIEW_SELECT[staff].where(t.c.id == _param("ticket_id", ticket_id, t.c.id)),
            {"ticket_id": ticket_id}))
        return (await self._with_attachments(rows, staff=staff))[0] if rows else None

    async def tickets(self, where: TicketFilter, page: PageRequest, *, staff: bool,
                      count_cap: int | None = None) -> tuple[list[TicketView], Total | None]:
        """The page; with ``count_cap``, also how many match — exact up to the cap when counting is
        cheap, otherwise the planner's estimate:

        1. EXPLAIN (plan only, nothing runs) the capped count ``SELECT count(*) FROM (SELECT 1 …
           LIMIT cap + 1)``: its total cost, and the rows expected under the LIMIT (the estimate).
        2. If that cost is over COUNT_COST_BUDGET, or the estimate over COUNT_ESTIMATE_MARGIN × the
           cap, the estimate is the total (``exact=False``) and the page is read alone.
        3. Otherwise the count is a column of the page's statement. At most ``cap``: the exact total.
           More: the larger of the estimate and ``cap + 1``, ``exact=False``.

        Step 1's decision (never the total) is reused for the same filter from ``decisions`` while
        it is recent (:mod:`.count_decisions`): then the first page is one statement.
        """
        statements = PageStatements(where, page, staff=staff, count_cap=count_cap or 0)
        if count_cap is None:
            rows = await STATEMENTS.fetch_shaped(self._conn, statements.page())
            return await self._with_attachments(rows, staff=staff), None
        key = statements.decision_key()
        kept = self._decisions.get(key) if self._decisions is not None else None
        if kept is None:
            kept = _count_decision(top_node(await STATEMENTS.scalar_shaped(self._conn, statements.count_plan())),
                                   count_cap)
            if self._decisions is not None:
                self._decisions.put(key, *kept)
        cheap, estimate = kept
        if not cheap:  # too dear to count
            rows, total = await STATEMENTS.fetch_shaped(self._conn, statements.page()), estimate
        else:
            rows = await STATEMENTS.fetch_shaped(self._conn, statements.counted_page())
            total = _total(rows[0][_COUNTED] if rows else 0, estimate, count_cap)
        return await self._with_attachments(rows, staff=staff), total

    async def _with_attachments(self, rows: list[asyncpg.Record], *, staff: bool) -> list[TicketView]:
        """Ticket views with their descriptions' attachments: one more statement, for the rows that
        have some (``_has_attachments``) only."""
        ids = [row["id"] for row in rows if row[_ATTACHED]]
        found = await self._attachments("ticket_id", ids, staff=staff) if ids else {}
        return _TICKET_VIEWS.views(rows, found)

    async def _attachments(self, owner: str, ids: list[uuid.UUID], *, staff: bool) -> dict[uuid.UUID, list[AttachmentView]]:
        """Attachment views of the tickets' descriptions (``owner`` "ticket_id") or of the replies
        ("reply_id") ``ids``, grouped by owner, oldest first. A customer never gets an internal
        note's attachment, nor the uri of one that is not scanned clean."""
        def build() -> Select[Any]:
            stmt = select(at).where(at.c[owner] == any_(bindparam("ids", ids, type_=_UUID_ARRAY)))
            if owner == "ticket_id":
                stmt = stmt.where(at.c.reply_id.is_(None))
            if not staff:
                stmt = stmt.where(at.c.internal.is_(False))
            return stmt.order_by(at.c.created_at, at.c.id)

        grouped: dict[uuid.UUID, list[Any]] = {}
        for row in await STATEMENTS.fetch_shaped(self._conn, Shaped(("attachments", owner, staff), build, {"ids": ids})):
            grouped.setdefault(row[owner], []).append(AttachmentView(**attachment_from_row(row).view(show_uri=staff)))
        return grouped

    async def search(self, where: TicketFilter, text: str, after: SortKey | None, limit: int, *,
                     staff: bool) -> list[SearchItem]:
        """Up to ``limit + 1`` matches, newest first, after ``after`` (created_at, id)."""
        stmt = search_statement(where, text, after, limit, staff=staff, config=self._search_config)
        async with self._custom_plans():
            rows = await STATEMENTS.fetch(self._conn, stmt)
        return [SearchItem.model_validate(dict(row)) for row in rows]

    async def search_count(self, where: TicketFilter, text: str, cap: int, *, staff: bool) -> Total:
        """How many tickets match the search, decided as for :meth:`tickets`' count (then run apart)."""
        source, matches, _ = _matching(where, _tsquery(text, self._search_config), staff=staff)
        async with self._custom_plans():
            return await self._count(select(literal(1)).select_from(source).where(*matches), cap)

    @asynccontextmanager
    async def _custom_plans(self) -> AsyncIterator[None]:
        """A transaction in which every statement is planned for its own words: a generic plan
        (which asyncpg's prepared statements get after five runs) cannot tell a rare word from a
        common one."""
        async with self._conn.transaction(readonly=True):
            await self._conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            yield

    async def _count(self, matching: Select[Any], cap: int) -> Total:
        capped, estimate = await self._count_plan(matching, cap)
        if capped is None:
            return estimate
        return _total(await STATEMENTS.scalar(self._conn, capped), estimate, cap)

    async def _count_plan(self, matching: Select[Any], cap: int) -> tuple[Select[Any] | None, Total]:
        """The capped count of ``matching`` if it is cheap (EXPLAIN: planned, nothing runs), else
        None; and the planner's estimate."""
        capped = select(func.count()).select_from(matching.limit(cap + 1).subquery())
        worth_it, estimate = _count_decision(top_node(await STATEMENTS.scalar(self._conn, Explain(capped))), cap)
        return (capped if worth_it else None), estimate

    async def thread(self, ticket_id: uuid.UUID, *, internal: bool, after: SortKey | None,
                     limit: int) -> tuple[TicketAccess | None, list[ReplyView]]:
        """The ticket's access fields and a page of its replies in ONE statement: the ticket row,
        outer-joined to a LATERAL page of its replies (no rows: no such ticket; one row of NULL
        reply columns: no replies on this page)."""
        def build() -> Select[Any]:
            page = select(r).where(r.c.ticket_id == t.c.id)
            if not internal:
                page = page.where(r.c.internal.is_(False))
            if after is not None:
                page = page.where(_beyond([r.c.created_at, r.c.id], after, descending=False))
            replies = page.order_by(r.c.created_at, r.c.id).limit(_param("limit", limit + 1)).lateral("r")
            return (select(*replies.c, _has_attachments(internal, reply=replies),
                           t.c.customer_id.label(_T_CUSTOMER), t.c.deleted_at.label(_T_DELETED))
                    .select_from(t.outerjoin(replies, true()))
                    .where(t.c.id == _param("ticket_id", ticket_id, t.c.id)))

        rows = await STATEMENTS.fetch_shaped(self._conn, Shaped(
            ("thread", internal, after is not None), build,
            {"ticket_id": ticket_id, "limit": limit + 1} | _after_values(after)))
        if not rows:
            return None, []
        access = TicketAccess(rows[0][_T_CUSTOMER], rows[0][_T_DELETED])
        if rows[0]["id"] is None:  # the outer join's one row of NULLs: no replies on this page
            rows = []
        # In the order of the LATERAL page (its ORDER BY picked the rows): sorted here, as Python
        # orders these keys the way PostgreSQL does, rather than by an outer ORDER BY — a Sort
        # node the planner adds for that, ~0.1 ms of a 200-reply page (bench/README.md).
        rows.sort(key=_THREAD_ORDER)
        ids = [row["id"] for row in rows if row[_ATTACHED]]
        found = await self._attachments("reply_id", ids, staff=internal) if ids else {}
        return access, _REPLY_VIEWS.views(rows, found)

    async def history(self, ticket_id: uuid.UUID, after_version: int, limit: int) -> list[HistoryEntry]:
        stmt = (select(ev.c.body).where(ev.c.ticket_id == ticket_id, ev.c.ticket_version > after_version)
                .order_by(ev.c.ticket_version).limit(limit + 1))
        return [_history_entry(row[0]) for row in await STATEMENTS.fetch(self._conn, stmt)]

    async def time_entries(self, ticket_id: uuid.UUID) -> list[TimeEntryView]:
        stmt = select(te).where(te.c.ticket_id == ticket_id).order_by(te.c.created_at, te.c.id)
        return [TimeEntryView.model_validate(dict(row)) for row in await STATEMENTS.fetch(self._conn, stmt)]


#: Extra columns of some statements, never fields of a view.
_ATTACHED, _COUNTED = "_attached", "_counted"


def _has_attachments(staff: bool, reply: Any = None) -> ColumnElement[bool]:
    """Whether the ticket's description (or, with ``reply``, that reply) has attachments this
    actor sees: an index probe per row, instead of a statement per page that almost never finds any."""
    owner = [at.c.ticket_id == t.c.id, at.c.reply_id.is_(None)] if reply is None else [at.c.reply_id == reply.c.id]
    return exists().where(*owner, *([] if staff else [at.c.internal.is_(False)])).label(_ATTACHED)


#: A page's views straight from its rows (:mod:`.row_views`: no validation of our own columns;
#: the statements' marker columns come last, after the views' fields, and are left out).
_TICKET_VIEWS, _REPLY_VIEWS = RowViews(TicketView), RowViews(ReplyView)


_T_CUSTOMER, _T_DELETED = "_ticket_customer_id", "_ticket_deleted_at"
#: A thread's order, oldest first: ``(created_at, id)``, as its keyset cursor.
_THREAD_ORDER = operator.itemgetter("created_at", "id")


def _count_decision(node: dict[str, Any], cap: int) -> tuple[bool, Total]:
    """From the EXPLAIN of a capped count: whether to run it, and the planner's estimate."""
    below = limited_input(node)
    estimate = Total(int(below["Plan Rows"]) if below is not None else 0, exact=False)
    return node["Total Cost"] <= COUNT_COST_BUDGET and estimate.value <= COUNT_ESTIMATE_MARGIN * cap, estimate


def _total(counted: int | None, estimate: Total, cap: int) -> Total:
    """A capped count's answer: exact up to ``cap``; above, at least ``cap + 1`` (or the estimate)."""
    if counted is not None and counted <= cap:
        return Total(counted, exact=True)
    return Total(max(estimate.value, cap + 1), exact=False)


def _filter_values(w: TicketFilter) -> dict[str, Any]:
    """The parameters of a filter's WHERE clause (:func:`conditions`), by name. Which names are
    present, with ``include_deleted`` and ``unassigned`` (which have no parameter), is the filter's
    shape (:func:`_filter_shape`): a set filter of one value is ``status`` (``=``, so an index on
    the column yields its order), of several ``status_any`` (``= ANY``)."""
    values: dict[str, Any] = {}
    if w.customer_id is not None:
        values["customer_id"] = w.customer_id
    if not w.unassigned and w.assignee_id is not None:
        values["assignee_id"] = w.assignee_id
    for name, chosen in (("status", w.statuses), ("priority", w.priorities)):
        if len(chosen) == 1:
            values[name] = chosen[0]
        elif chosen:
            values[f"{name}_any"] = list(chosen)
    if w.category_id is not None:
        values["category_id"] = w.category_id
    if w.created_from is not None:
        values["created_from"] = w.created_from
    if w.created_to is not None:
        values["created_to"] = w.created_to
    if w.title_contains:
        values["title_pattern"] = f"%{_escape_like(w.title_contains)}%"
    return values


def _filter_shape(w: TicketFilter, values: dict[str, Any]) -> tuple[Any, ...]:
    return (w.include_deleted, w.unassigned, *values)


def conditions(w: TicketFilter) -> list[ColumnElement[bool]]:
    """The WHERE clause of a ticket filter, its values named as :func:`_filter_values` names them
    (public for the benchmark's EXPLAINs)."""
    values = _filter_values(w)
    where: list[ColumnElement[bool]] = []
    if not w.include_deleted:
        where.append(t.c.deleted_at.is_(None))
    if "customer_id" in values:
        where.append(t.c.customer_id == _param("customer_id", values["customer_id"], t.c.customer_id))
    if w.unassigned:
        where.append(t.c.assignee_id.is_(None))
    elif "assignee_id" in values:
        where.append(t.c.assignee_id == _param("assignee_id", values["assignee_id"], t.c.assignee_id))
    for column in (t.c.status, t.c.priority):
        if column.key in values:
            where.append(column == _param(column.key, values[column.key], column))
        elif f"{column.key}_any" in values:
            where.append(column == any_(bindparam(f"{column.key}_any", values[f"{column.key}_any"], type_=_TEXT_ARRAY)))
    if "category_id" in values:
        where.append(t.c.category_id == _param("category_id", values["category_id"], t.c.category_id))
    if "created_from" in values:
        where.append(t.c.created_at >= _param("created_from", values["created_from"], t.c.created_at))
    if "created_to" in values:
        where.append(t.c.created_at < _param("created_to", values["created_to"], t.c.created_at))
    if "title_pattern" in values:
        where.append(t.c.title.ilike(_param("title_pattern", values["title_pattern"], t.c.title), escape="\\"))
    return where


def _param(name: str, value: Any, like: Any = None) -> Any:
    """A named bind parameter carrying ``value``, of the type of column ``like`` (else an integer)."""
    return bindparam(name, value, type_=like.type if like is not None else Integer())


def _page_values(page: PageRequest) -> dict[str, Any]:
    return {"limit": page.limit + 1} | _after_values(page.after)


def _after_values(after: SortKey | None) -> dict[str, Any]:
    """The values of :func:`_beyond`'s parameters."""
    return {f"after_{i}": value for i, value in enumerate(after or ())}


def _matching_tickets(where: TicketFilter) -> Select[Any]:
    return select(literal(1)).select_from(t).where(*conditions(where))


def _capped_count(where: TicketFilter, cap: int) -> Select[Any]:
    """How many tickets match, counting at most ``cap + 1`` (the parameter ``cap``)."""
    return select(func.count()).select_from(_matching_tickets(where).limit(_param("cap", cap + 1)).subquery())


class PageStatements:
    """The statements of one :meth:`SqlTicketReads.tickets` call, as prepared shapes (public for
    the test that each gives what building it afresh gives)."""

    def __init__(self, where: TicketFilter, page: PageRequest, *, staff: bool, count_cap: int) -> None:
        self._where, self._page, self._staff, self._cap = where, page, staff, count_cap
        self._values = _filter_values(where)
        self._filters = _filter_shape(where, self._values)
        self._key = ("page", staff, page.sort, page.descending, page.after is not None, self._filters)

    def page(self) -> Shaped:
        return Shaped(self._key, self._build_page, self._values | _page_values(self._page))

    def count_plan(self) -> Shaped:
        """EXPLAIN of the capped count (planned, never run)."""
        return Shaped(("count plan", self._filters), lambda: Explain(_capped_count(self._where, self._cap)),
                      self._values | {"cap": self._cap + 1})

    def decision_key(self) -> Hashable:
        """What :meth:`count_plan`'s decision depends on: the filter's shape, values and the cap."""
        return decision_key(("count plan", self._filters), self._values, self._cap)

    def counted_page(self) -> Shaped:
        """The page with the capped count as a column (one statement, one snapshot)."""
        return Shaped((*self._key, "counted"), lambda: self._build_page().add_columns(
            _capped_count(self._where, self._cap).scalar_subquery().label(_COUNTED)),
            self._values | _page_values(self._page) | {"cap": self._cap + 1})

    def _build_page(self) -> Select[Any]:
        return ticket_page_statement(self._where, self._page, staff=self._staff)


def ticket_page_statement(where: TicketFilter, page: PageRequest, *, staff: bool) -> Select[Any]:
    """The statement :meth:`SqlTicketReads.tickets` runs (for EXPLAIN in tests and benchmarks); its
    parameters are ``_filter_values(where) | _page_values(page)``."""
    keys = [t.c[name] for name in SORT_KEYS[page.sort]]
    stmt = _VIEW_SELECT[staff].where(*conditions(where))
    if page.after is not None:
        stmt = stmt.where(_beyond(keys, page.after, page.descending))
    return (stmt.order_by(*(k.desc() if page.descending else k.asc() for k in keys))
            .limit(_param("limit", page.limit + 1)))


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


#: A ticket view's columns and its attachments flag, for staff (True) and everyone else: built once
#: (a select of 27 columns costs ~80 µs to build; its generative copies, with a WHERE, almost nothing).
_VIEW_SELECT = {staff: select(*_columns(staff), _has_attachments(staff)) for staff in (True, False)}


def _beyond(keys: list[Any], after: SortKey, descending: bool) -> ColumnElement[bool]:
    """Rows strictly after ``after`` in the sort: one row-value comparison, one index range. Its
    parameters are ``after_0``, ``after_1``… (:func:`_after_values`)."""
    position = tuple_(*(_param(name, value, key) for key, (name, value)
                        in zip(keys, _after_values(after).items(), strict=True)))
    return tuple_(*keys) < position if descending else tuple_(*keys) > position


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _history_entry(body: str) -> HistoryEntry:
    event = json.loads(body)
    return HistoryEntry(
        event_id=event["event_id"], type=event["type"], ticket_version=event["ticket_version"],
        occurred_at=event["occurred_at"], actor=event["actor"], internal=event["internal"],
        payload=event["payload"],
    )
