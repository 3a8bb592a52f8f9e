"""Answers to queries, sent to the query's ``reply_to`` topic with its ``correlation_id``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from .envelope import Actor, Message, utcnow
from .errors import ReasonCode
from .views import ReplyView, TicketView, TimeEntryView


class AnswerBase(Message):
    """``causation_id`` is the query's ``message_id``."""

    sent_at: Annotated[AwareDatetime, Field(default_factory=utcnow)]
    query_type: str


class TicketAnswer(AnswerBase):
    type: Literal["ticket.get.answer"] = "ticket.get.answer"
    ticket: TicketView


class TicketPageAnswer(AnswerBase):
    type: Literal["ticket.page.answer"] = "ticket.page.answer"
    items: list[TicketView]
    next_cursor: str | None
    total: int
    total_exact: bool = Field(True, description="False when the count was estimated on a very large match.")


class SearchItem(TicketView):
    """A ticket as ``ticket.list`` shows it, with how well it matched and where."""

    rank: float = Field(description="ts_rank of the match (higher is better); from what the asker may see only.")
    snippet: str = Field(description=(
        "Up to two fragments of the matching text, HTML-escaped, matches wrapped in <mark>…</mark>; "
        "from what the asker may see only."))


class SearchAnswer(AnswerBase):
    type: Literal["ticket.search.answer"] = "ticket.search.answer"
    items: list[SearchItem]
    next_cursor: str | None
    total: int
    total_exact: bool = Field(True, description="False when the count was estimated on a very large match.")


class ThreadAnswer(AnswerBase):
    type: Literal["ticket.thread.answer"] = "ticket.thread.answer"
    ticket_id: uuid.UUID
    replies: list[ReplyView]
    next_cursor: str | None


class HistoryEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    event_id: uuid.UUID
    type: str
    ticket_version: int
    occurred_at: AwareDatetime
    actor: Actor
    internal: bool
    payload: dict[str, Any]


class HistoryAnswer(AnswerBase):
    type: Literal["ticket.history.answer"] = "ticket.history.answer"
    ticket_id: uuid.UUID
    entries: list[HistoryEntry]
    next_cursor: str | None = None


class TimeEntriesAnswer(AnswerBase):
    type: Literal["ticket.time_entries.answer"] = "ticket.time_entries.answer"
    ticket_id: uuid.UUID
    entries: list[TimeEntryView]
    total_minutes: int


class ErrorAnswer(AnswerBase):
    type: Literal["ticket.query.error"] = "ticket.query.error"
    reason: ReasonCode
    message: str


Answer = Annotated[
    Union[TicketAnswer, TicketPageAnswer, SearchAnswer, ThreadAnswer, HistoryAnswer, TimeEntriesAnswer, ErrorAnswer],
    Field(discriminator="type"),
]
answer_adapter: TypeAdapter[Answer] = TypeAdapter(Answer)


def parse_answer(data: bytes | str) -> AnswerBase:
    return answer_adapter.validate_json(data)  # type: ignore[return-value]


