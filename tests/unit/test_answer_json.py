"""The service writes query answers with orjson (``answer_json``): these check that it writes the
very bytes pydantic's ``model_dump_json()`` writes, for every answer type and hostile values, and
that a model it cannot write that way is refused at import rather than written wrongly."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import pytest
from asyncpg.pgproto.pgproto import UUID as AsyncpgUUID
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, field_serializer
from ticket_contracts import answers as a
from ticket_contracts.attachments import AttachmentView
from ticket_contracts.envelope import Actor
from ticket_contracts.views import ReplyView, TicketView, TimeEntryView

from service.adapters.serialization import _plain_models, answer_json

NOW = datetime(2026, 12, 3, 17, 30, 24, 49431, tzinfo=UTC)
WHOLE_SECOND = datetime(2026, 12, 3, 17, 30, 24, tzinfo=UTC)
ELSEWHERE = datetime(2026, 12, 3, 19, 0, 0, 5, tzinfo=timezone(timedelta(hours=5, minutes=30)))


def pg_uuid() -> uuid.UUID:
    """asyncpg's UUID subclass, which the read model's views carry (orjson does not take it natively)."""
    return AsyncpgUUID(str(uuid.uuid4()))


def envelope(query_type: str) -> dict[str, Any]:
    return {"message_id": uuid.uuid4(), "correlation_id": uuid.uuid4(), "causation_id": pg_uuid(),
            "sent_at": NOW, "query_type": query_type}


def attachment(uri: str | None) -> AttachmentView:
    return AttachmentView(attachment_id=pg_uuid(), filename="log \"1\".txt", content_type="text/plain",
                          size_bytes=2**40, sha256="ab" * 32, uri=uri, scan_status="clean", scanned_at=ELSEWHERE)


def ticket_fields(**changes: Any) -> dict[str, Any]:
    return {
        "id": pg_uuid(), "number": "T-000001", "customer_id": pg_uuid(), "created_by": uuid.uuid4(),
        "title": "Printer \u2028 on fire \U0001f525", "description": "line 1\nline 2\t\x00\x1f \\ \"quoted\" </script>",
        "status": "open", "status_reason": None, "priority": "high", "category_id": None, "channel": "email",
        "tags": ["printer", "vip"], "assignee_id": pg_uuid(), "version": 7, "created_at": NOW,
        "updated_at": WHOLE_SECOND, "status_changed_at": ELSEWHERE, "first_response_at": None,
        "resolved_at": None, "closed_at": None, "deleted_at": None, "follow_up_of": None,
        "merged_into": None, "merged_from": [pg_uuid(), uuid.uuid4()], "time_spent_minutes": None,
        "attachments": [attachment("s3://bucket/key"), attachment(None)], "follower_ids": [pg_uuid()],
    } | changes


def reply(**changes: Any) -> ReplyView:
    return ReplyView(**{"id": pg_uuid(), "ticket_id": pg_uuid(), "author_id": pg_uuid(), "author_role": "agent",
                        "body": "Hello — \"done\"\r\n", "internal": False, "source": "email",
                        "email_message_id": "<a@b>", "created_at": NOW, "attachments": []} | changes)


ANSWERS: list[a.AnswerBase] = [
    a.TicketAnswer(**envelope("ticket.get"), ticket=TicketView(**ticket_fields(time_spent_minutes=90))),
    a.TicketPageAnswer(**envelope("ticket.my"), items=[TicketView(**ticket_fields()) for _ in range(3)],
                     next_cursor="eyJrIjpbMV19", total=10_001, total_exact=False),
    a.TicketPageAnswer(**envelope("ticket.list"), items=[], next_cursor=None, total=0),
    a.SearchAnswer(**envelope("ticket.search"), next_cursor=None, total=2, items=[
        a.SearchItem(**ticket_fields(), rank=0.0607927, snippet="a <mark>printer</mark> … b"),
        a.SearchItem(**ticket_fields(), rank=1e-20, snippet="")]),
    a.ThreadAnswer(**envelope("ticket.thread"), ticket_id=pg_uuid(), next_cursor="abc", replies=[
        reply(), reply(internal=True, source="web", email_message_id=None, author_role="customer",
                       attachments=[attachment("https://x/y?z=1&w=2")])]),
    a.HistoryAnswer(**envelope("ticket.history"), ticket_id=uuid.uuid4(), entries=[a.HistoryEntry(
        event_id=uuid.uuid4(), type="ticket.updated", ticket_version=2, occurred_at=ELSEWHERE,
        actor=Actor(user_id=uuid.uuid4(), role="agent"), internal=False,
        payload={"changes": {"priority": ["normal", "high"], "tags": None, "ratio": 0.5, "n": -3, "ok": True}})]),
    a.HistoryAnswer(**envelope("ticket.history"), ticket_id=uuid.uuid4(), entries=[  # as the read model parses them
        a.HistoryEntry.model_validate_json(
            f'{{"event_id": "{uuid.uuid4()}", "type": "ticket.created", "ticket_version": 1, "internal": false,'
            f' "occurred_at": "{moment}", "actor": {{"user_id": "{uuid.uuid4()}", "role": "agent"}}, "payload": {{}}}}')
        for moment in ("2026-12-03T10:00:00.5+00:00", "2026-12-03T10:00:00Z", "2026-12-03T10:00:00.123456+05:30")]),
    a.TimeEntriesAnswer(**envelope("ticket.time_entries"), ticket_id=uuid.uuid4(), total_minutes=45, entries=[
        TimeEntryView(id=pg_uuid(), ticket_id=pg_uuid(), user_id=pg_uuid(), minutes=45, note=None, created_at=NOW)]),
    a.ErrorAnswer(**envelope("ticket.get"), reason="not_found", message="no such ticket"),
]


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: f"{a.type}")
def test_every_answer_type_is_written_exactly_as_pydantic_writes_it(answer: a.AnswerBase) -> None:
    assert answer_json(answer) == answer.model_dump_json().encode()


def test_what_orjson_cannot_write_falls_back_to_pydantic() -> None:
    """A history payload holding an integer beyond 64 bits, or a set (neither is ever read back from
    the stored JSON, but the payload's type allows them): the same bytes, pydantic's."""
    for payload in ({"big": 2**70}, {"tags": {"printer"}}):
        answer = a.HistoryAnswer(**envelope("ticket.history"), ticket_id=uuid.uuid4(), entries=[a.HistoryEntry(
            event_id=uuid.uuid4(), type="ticket.updated", ticket_version=1, occurred_at=NOW,
            actor=Actor(user_id=uuid.uuid4(), role="admin"), internal=True, payload=payload)])
        assert answer_json(answer) == answer.model_dump_json().encode()


offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1),
                       timezones=st.one_of(st.just(UTC), offsets))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**63, max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None, database=None)
@given(body=st.text(), created_at=moments, rank=st.floats(allow_nan=False, allow_infinity=False),
       payload=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_any_text_moment_number_or_payload_is_written_as_pydantic_writes_it(
        body: str, created_at: datetime, rank: float, payload: dict[str, Any]) -> None:
    answers: list[a.AnswerBase] = [
        a.ThreadAnswer(**envelope("ticket.thread"), ticket_id=uuid.uuid4(), next_cursor=body,
                     replies=[reply(body=body, created_at=created_at)]),
        a.SearchAnswer(**envelope("ticket.search"), next_cursor=None, total=1, items=[
            a.SearchItem(**ticket_fields(title=body, created_at=created_at), rank=rank, snippet=body)]),
        a.HistoryAnswer(**envelope("ticket.history"), ticket_id=uuid.uuid4(), entries=[a.HistoryEntry(
            event_id=uuid.uuid4(), type="ticket.updated", ticket_version=1, occurred_at=created_at,
            actor=Actor(user_id=uuid.uuid4(), role="agent"), internal=False, payload=payload)]),
    ]
    for answer in answers:
        assert answer_json(answer) == answer.model_dump_json().encode()


def test_a_model_that_does_not_serialise_as_its_fields_is_refused() -> None:
    class Renamed(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        value: int = Field(serialization_alias="v")

    class Custom(BaseModel):
        model_config = ConfigDict(frozen=True, extra="forbid")
        value: int

        @field_serializer("value")
        def _double(self, value: int) -> int:
            return value * 2

    class Open(BaseModel):
        model_config = ConfigDict(extra="allow")

    for model in (Renamed, Custom, Open):
        class Carrier(a.AnswerBase):
            type: Literal["x"] = "x"
            part: list[model]  # type: ignore[valid-type]

        with pytest.raises(TypeError, match=model.__name__):
            _plain_models(Carrier)
