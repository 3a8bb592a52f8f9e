"""Queries on ``tickets.queries.v1`` (SPEC §9): request/reply via the ``reply_to`` header."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Literal, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from .envelope import Request
from .model import Priority, Status

PAGE_MAX = 100
SEARCH_PAGE_MAX = 50
SEARCH_TEXT_MAX = 200


class SortField(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    PRIORITY = "priority"


class QueryParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GetTicketParams(QueryParams):
    ticket_id: uuid.UUID
    include_deleted: bool = Field(False, description="Admins only: also find a deleted ticket.")


class PageParams(QueryParams):
    sort: SortField = SortField.CREATED
    descending: bool = True
    cursor: str | None = Field(None, description="Opaque; from the previous page's next_cursor.")
    limit: Annotated[int, Field(ge=1, le=PAGE_MAX)] = 25


class TicketFilterParams(QueryParams):
    """The filters of ``ticket.list`` (without its title ``text``); ``ticket.search`` takes them too."""

    status: list[Status] | None = None
    priority: list[Priority] | None = None
    category_id: uuid.UUID | None = None
    assignee_id: uuid.UUID | None = None
    unassigned: bool = False
    customer_id: uuid.UUID | None = Field(None, description="Staff only.")
    created_from: AwareDatetime | None = None
    created_to: AwareDatetime | None = None
    include_deleted: bool = Field(False, description="Admins only.")


class ListTicketsParams(PageParams, TicketFilterParams):
    text: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(None, description="Text in the title.")


SearchText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=SEARCH_TEXT_MAX)]


class SearchTicketsParams(TicketFilterParams):
    text: SearchText = Field(description=(
        'Web-search syntax: words (all must occur), "a phrase", -excluded, OR. Matches title, description and '
        "public replies; internal notes for staff only."))
    page_size: Annotated[int, Field(ge=1, le=SEARCH_PAGE_MAX)] = 20
    cursor: str | None = Field(None, description="Opaque; from the previous page's next_cursor.")


class MyTicketsParams(PageParams):
    status: list[Status] | None = None


class ThreadParams(QueryParams):
    ticket_id: uuid.UUID
    cursor: str | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 200


class HistoryParams(QueryParams):
    ticket_id: uuid.UUID
    after_version: Annotated[int, Field(ge=0)] = 0
    limit: Annotated[int, Field(ge=1, le=500)] = 200


class TimeEntriesParams(QueryParams):
    ticket_id: uuid.UUID


class QueryBase(Request):
    pass


class GetTicket(QueryBase):
    type: Literal["ticket.get"] = "ticket.get"
    payload: GetTicketParams


class ListTickets(QueryBase):
    type: Literal["ticket.list"] = "ticket.list"
    payload: ListTicketsParams = ListTicketsParams()


class MyTickets(QueryBase):
    type: Literal["ticket.my"] = "ticket.my"
    payload: MyTicketsParams = MyTicketsParams()


class SearchTickets(QueryBase):
    """Full-text search; newest matching ticket first (see docs/queries.md)."""

    type: Literal["ticket.search"] = "ticket.search"
    payload: SearchTicketsParams


class TicketThread(QueryBase):
    type: Literal["ticket.thread"] = "ticket.thread"
    payload: ThreadParams


class TicketHistory(QueryBase):
    type: Literal["ticket.history"] = "ticket.history"
    payload: HistoryParams


class TicketTimeEntries(QueryBase):
    type: Literal["ticket.time_entries"] = "ticket.time_entries"
    payload: TimeEntriesParams


Query = Annotated[
    Union[GetTicket, ListTickets, MyTickets, SearchTickets, TicketThread, TicketHistory, TicketTimeEntries],
    Field(discriminator="type"),
]
query_adapter: TypeAdapter[Query] = TypeAdapter(Query)


def parse_query(data: bytes | str) -> QueryBase:
    return query_adapter.validate_json(data)  # type: ignore[return-value]


