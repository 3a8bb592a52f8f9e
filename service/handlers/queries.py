"""Query handlers (SPEC §9): decide what the actor may see, ask the read model, answer.

Each takes the query contract, the resolved actor and a read model and returns a contract
answer; none loads an aggregate. A rule violation raises a domain error — the Kafka entrypoint
turns it into an ``ErrorAnswer`` with the same reason code a command would get.

Pages: keyset pagination on (sort key…, id); ``total`` is counted for the first page only
(exact up to ``COUNT_CAP``, see ``SqlTicketReads.tickets``) and carried by the cursor to the
pages after it, so it is the number of matching tickets when the walk started.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from ticket_contracts import queries as q
from ticket_contracts.answers import (
    AnswerBase,
    HistoryAnswer,
    SearchAnswer,
    ThreadAnswer,
    TicketAnswer,
    TicketPageAnswer,
    TimeEntriesAnswer,
)

from service.domain.errors import InvalidInput
from service.domain.values import Actor, Role
from service.domain.visibility import (
    check_may_query,
    check_may_see_deleted,
    check_readable,
    check_staff_only,
    customer_scope,
)

from .cursors import decode_page, decode_position, encode_page, encode_position
from .read_model import PageRequest, TicketFilter, TicketReads, Total, sort_key

#: Up to this many matching tickets the total is exact; above it, an estimate.
COUNT_CAP = 10_000


async def get_ticket(query: q.GetTicket, actor: Actor, reads: TicketReads) -> TicketAnswer:
    p = query.payload
    check_may_see_deleted(actor, p.include_deleted)
    ticket = await reads.ticket(p.ticket_id, staff=actor.is_staff)
    return TicketAnswer(**_reply_to(query), ticket=check_readable(actor, ticket, allow_deleted=p.include_deleted))


async def list_tickets(query: q.ListTickets, actor: Actor, reads: TicketReads) -> TicketPageAnswer:
    p = query.payload
    return await _page(query, p, _filter(p, actor, title_contains=p.text), actor, reads)


async def search_tickets(query: q.SearchTickets, actor: Actor, reads: TicketReads) -> SearchAnswer:
    """Full-text search with the filters of ``ticket.list``, newest match first.

    Staff search internal notes too; a customer's search runs on a document without them, so
    they cannot change what it matches, its ranks, its snippets or its total."""
    p = query.payload
    where = _filter(p, actor)
    fingerprint = hashlib.sha256(f"search|{where.fingerprint()}|{actor.is_staff}|{p.text}".encode()).hexdigest()[:16]
    cursor = decode_page(p.cursor, "created", True, fingerprint) if p.cursor else None
    rows = await reads.search(where, p.text, cursor.after if cursor else None, p.page_size, staff=actor.is_staff)
    items, more = rows[: p.page_size], len(rows) > p.page_size
    if cursor is not None:
        total = cursor.total
    elif not more:
        total = Total(len(items), exact=True)
    else:
        total = await reads.search_count(where, p.text, COUNT_CAP, staff=actor.is_staff)
    next_cursor = encode_page("created", True, (items[-1].created_at, items[-1].id), fingerprint,
                              total) if more else None
    return SearchAnswer(**_reply_to(query), items=items, next_cursor=next_cursor, total=total.value,
                        total_exact=total.exact)


def _filter(p: q.TicketFilterParams, actor: Actor, title_contains: str | None = None
            ) -> TicketFilter:
    """The filters of a listing or a search, with the actor's scope applied."""
    check_may_see_deleted(actor, p.include_deleted)
    if p.unassigned and p.assignee_id is not None:
        raise InvalidInput("payload: give assignee_id or unassigned, not both")
    if p.created_from and p.created_to and p.created_from > p.created_to:
        raise InvalidInput("payload.created_from: after created_to")
    return TicketFilter(
        customer_id=customer_scope(actor, p.customer_id), assignee_id=p.assignee_id, unassigned=p.unassigned,
        statuses=_values(p.status), priorities=_values(p.priority), category_id=p.category_id,
        created_from=p.created_from, created_to=p.created_to, title_contains=title_contains,
        include_deleted=p.include_deleted,
    )


async def my_tickets(query: q.MyTickets, actor: Actor, reads: TicketReads) -> TicketPageAnswer:
    """A customer's: their customer's tickets. Staff's: the tickets assigned to them."""
    p = query.payload
    if actor.role is Role.CUSTOMER:
        where = TicketFilter(customer_id=actor.customer_id, statuses=_values(p.status))
    else:
        where = TicketFilter(assignee_id=actor.user_id, statuses=_values(p.status))
    return await _page(query, p, where, actor, reads)


async def ticket_thread(query: q.TicketThread, actor: Actor, reads: TicketReads) -> ThreadAnswer:
    """Replies oldest first; internal notes only for staff. Admins may read a deleted ticket's."""
    p = query.payload
    after = decode_position(p.cursor) if p.cursor else None
    access, rows = await reads.thread(p.ticket_id, internal=actor.is_staff, after=after, limit=p.limit)
    check_readable(actor, access, allow_deleted=True)
    replies = rows[: p.limit]
    more = len(rows) > p.limit
    return ThreadAnswer(**_reply_to(query), ticket_id=p.ticket_id, replies=replies,
                        next_cursor=encode_position((replies[-1].created_at, replies[-1].id)) if more else None)


async def ticket_history(query: q.TicketHistory, actor: Actor, reads: TicketReads) -> HistoryAnswer:
    """The audit trail in version order; ``next_cursor`` is the ``after_version`` of the next page."""
    p = query.payload
    check_staff_only(actor, "a ticket's history")
    check_readable(actor, await reads.ticket(p.ticket_id, staff=True), allow_deleted=True)
    rows = await reads.history(p.ticket_id, p.after_version, p.limit)
    entries = rows[: p.limit]
    more = len(rows) > p.limit
    return HistoryAnswer(**_reply_to(query), ticket_id=p.ticket_id, entries=entries,
                         next_cursor=str(entries[-1].ticket_version) if more else None)


async def ticket_time_entries(query: q.TicketTimeEntries, actor: Actor, reads: TicketReads) -> TimeEntriesAnswer:
    p = query.payload
    check_staff_only(actor, "time entries")
    check_readable(actor, await reads.ticket(p.ticket_id, staff=True), allow_deleted=True)
    entries = await reads.time_entries(p.ticket_id)
    return TimeEntriesAnswer(**_reply_to(query), ticket_id=p.ticket_id, entries=entries,
                             total_minutes=sum(e.minutes for e in entries))


Handler = Callable[[Any, Actor, TicketReads], Awaitable[AnswerBase]]
HANDLERS: dict[str, Handler] = {
    "ticket.get": get_ticket,
    "ticket.list": list_tickets,
    "ticket.my": my_tickets,
    "ticket.search": search_tickets,
    "ticket.thread": ticket_thread,
    "ticket.history": ticket_history,
    "ticket.time_entries": ticket_time_entries,
}


async def answer(query: q.QueryBase, actor: Actor, reads: TicketReads) -> AnswerBase:
    check_may_query(actor)
    return await HANDLERS[query.type](query, actor, reads)


async def _page(query: q.QueryBase, p: q.PageParams, where: TicketFilter, actor: Actor,
                reads: TicketReads) -> TicketPageAnswer:
    fingerprint = where.fingerprint()
    cursor = decode_page(p.cursor, p.sort.value, p.descending, fingerprint) if p.cursor else None
    page = PageRequest(p.sort.value, p.descending, cursor.after if cursor else None, p.limit)
    # The first page is counted with it (in one snapshot); the pages after it carry that total.
    rows, counted = await reads.tickets(where, page, staff=actor.is_staff,
                                        count_cap=COUNT_CAP if cursor is None else None)
    items, more = rows[: p.limit], len(rows) > p.limit
    if cursor is not None:
        total = cursor.total
    elif not more:  # the first page holds everything
        total = Total(len(items), exact=True)
    else:
        assert counted is not None
        total = counted
    next_cursor = encode_page(p.sort.value, p.descending, sort_key(items[-1], p.sort.value), fingerprint,
                              total) if more else None
    return TicketPageAnswer(**_reply_to(query), items=items, next_cursor=next_cursor, total=total.value,
                            total_exact=total.exact)


def _reply_to(query: q.QueryBase) -> dict[str, Any]:
    """The envelope fields of an answer: caused by the query, in its conversation."""
    return {"query_type": query.type, "causation_id": query.message_id,
            "correlation_id": query.correlation_id or query.message_id}


def _values(items: list[Any] | None) -> tuple[str, ...]:
    """A set filter as a canonical tuple; an empty or missing list does not filter."""
    return tuple(sorted({i.value for i in items or ()}))
