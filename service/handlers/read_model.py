"""The read side's port: what the query handlers ask of a read model, in plain values.

The handlers decide *what* an actor may see (scope, visibility, staff-only fields) and express
it as a :class:`TicketFilter` and a :class:`PageRequest`; a read model only executes them.
``service.adapters.read_models`` implements :class:`TicketReads` on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Protocol

from ticket_contracts.answers import HistoryEntry, SearchItem
from ticket_contracts.views import ReplyView, TicketView, TimeEntryView

from service.domain.values import PRIORITY_RANK

#: Names of the sort keys of each sort, most significant first; ``id`` breaks every tie.
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "created": ("created_at", "id"),
    "updated": ("updated_at", "id"),
    "priority": ("priority_rank", "created_at", "id"),
}

#: A position in a sort: the values of SORT_KEYS[sort] of the last ticket already returned.
SortKey = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class TicketAccess:
    """What deciding whether an actor may read a ticket takes (``policy.check_visible``)."""

    customer_id: uuid.UUID
    deleted_at: datetime | None


@dataclass(frozen=True, slots=True)
class TicketFilter:
    """Which tickets a page or a count covers, with the actor's visibility scope already applied."""

    customer_id: uuid.UUID | None = None
    assignee_id: uuid.UUID | None = None
    unassigned: bool = False
    statuses: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    category_id: uuid.UUID | None = None
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive
    title_contains: str | None = None
    include_deleted: bool = False

    def fingerprint(self) -> str:
        """A short digest binding a cursor to the filter (and so the scope) it was issued for."""
        # The repr of the field values, as dataclasses.astuple gave it (cursors already issued stay
        # valid) without astuple's deep copy of every value (~80 µs a query).
        return hashlib.sha256(repr(tuple(getattr(self, f.name) for f in fields(self))).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PageRequest:
    sort: str
    descending: bool
    after: SortKey | None
    limit: int


@dataclass(frozen=True, slots=True)
class Total:
    value: int
    exact: bool


def sort_key(view: TicketView, sort: str) -> SortKey:
    """The position of ``view`` in ``sort``: where the next page starts."""
    values = {"created_at": view.created_at, "updated_at": view.updated_at, "id": view.id,
              "priority_rank": PRIORITY_RANK[view.priority]}
    return tuple(values[name] for name in SORT_KEYS[sort])


class TicketReads(Protocol):
    async def ticket(self, ticket_id: uuid.UUID, *, staff: bool) -> TicketView | None:
        """One ticket, deleted or not; ``time_spent_minutes`` is None unless ``staff``."""

    async def tickets(self, where: TicketFilter, page: PageRequest, *, staff: bool,
                      count_cap: int | None = None) -> tuple[list[TicketView], Total | None]:
        """Up to ``page.limit + 1`` tickets after ``page.after`` (the extra one says: there is more);
        with ``count_cap``, also how many match — exact up to the cap, an estimate above — from the
        same snapshot."""

    async def search(self, where: TicketFilter, text: str, after: SortKey | None, limit: int, *,
                     staff: bool) -> list[SearchItem]:
        """Up to ``limit + 1`` tickets matching ``text`` (web-search syntax), newest first by
        (created_at, id) after ``after``; staff match internal notes too, nobody else does."""

    async def search_count(self, where: TicketFilter, text: str, cap: int, *, staff: bool) -> Total:
        """How many tickets match the search: exact up to ``cap``, an estimate above."""

    async def thread(self, ticket_id: uuid.UUID, *, internal: bool, after: SortKey | None,
                     limit: int) -> tuple[TicketAccess | None, list[ReplyView]]:
        """Who may read the ticket (None: no such ticket) and up to ``limit + 1`` of its replies in
        thread order after ``after`` (created_at, id); internal notes only if ``internal``. One
        statement: the handler checks the access before it shows a reply."""

    async def history(self, ticket_id: uuid.UUID, after_version: int, limit: int) -> list[HistoryEntry]:
        """Up to ``limit + 1`` history entries with ``ticket_version > after_version``, in order."""

    async def time_entries(self, ticket_id: uuid.UUID) -> list[TimeEntryView]:
        ...
