"""Views made from rows without validation (service/adapters/row_views.py) must be the views pydantic
validates from the same rows: equal, fields in the model's order, the same JSON — and a model or a
row they cannot take that way is refused, never passed on unchecked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from asyncpg.pgproto.pgproto import UUID as AsyncpgUUID
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, field_validator
from ticket_contracts.attachments import AttachmentView
from ticket_contracts.model import Channel, Priority, ReplySource, Role, Status
from ticket_contracts.views import ReplyView, TicketView

from service.adapters.row_views import RowViews
from service.adapters.serialization import answer_json


class Row(tuple[Any, ...]):
    """An ``asyncpg.Record``'s part RowViews uses: its values in order, and ``keys()``."""

    names: tuple[str, ...]

    def keys(self) -> tuple[str, ...]:
        return self.names


def row(values: dict[str, Any]) -> Row:
    made = Row(values.values())
    made.names = tuple(values)
    return made


pg_ids = st.builds(lambda: AsyncpgUUID(str(uuid.uuid4())))
moments = st.datetimes(timezones=st.just(UTC))
texts = st.text(max_size=40)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def values_of(enum: Any) -> st.SearchStrategy[str]:
    return st.sampled_from([m.value for m in enum])


reply_rows = st.fixed_dictionaries({
    "id": pg_ids, "ticket_id": pg_ids, "author_id": pg_ids, "author_role": values_of(Role), "body": texts,
    "internal": st.booleans(), "source": values_of(ReplySource), "email_message_id": optional(texts),
    "created_at": moments,
})
ticket_rows = st.fixed_dictionaries({
    "id": pg_ids, "number": texts, "customer_id": pg_ids, "created_by": pg_ids, "title": texts,
    "description": texts, "status": values_of(Status), "status_reason": optional(texts),
    "priority": values_of(Priority), "category_id": optional(pg_ids), "channel": values_of(Channel),
    "tags": st.lists(texts, max_size=3), "assignee_id": optional(pg_ids), "version": st.integers(1, 2**31),
    "created_at": moments, "updated_at": moments, "status_changed_at": moments,
    "first_response_at": optional(moments), "resolved_at": optional(moments), "closed_at": optional(moments),
    "deleted_at": optional(moments), "follow_up_of": optional(pg_ids), "merged_into": optional(pg_ids),
    "merged_from": st.lists(pg_ids, max_size=2), "time_spent_minutes": optional(st.integers(0, 10**6)),
    "follower_ids": st.lists(pg_ids, max_size=2),
})
MARKERS = {"_attached": True, "_counted": 3}
REPLY_COLUMNS = [name for name in ReplyView.model_fields if name != "attachments"]
TICKET_COLUMNS = [name for name in TicketView.model_fields if name != "attachments"]


def attachment() -> AttachmentView:
    return AttachmentView(attachment_id=uuid.uuid4(), filename="a.txt", content_type="text/plain", size_bytes=1,
                          sha256="ab" * 32, uri=None, scan_status="pending", scanned_at=None)


def check(model: type[BaseModel], dicts: list[dict[str, Any]], attached: set[int], order: list[str]) -> None:
    """``order``: the statement's columns, the same for all its rows (any order of the fields, then the
    markers)."""
    rows = [row({k: d[k] for k in order} | MARKERS) for d in dicts]
    attachments = {d["id"]: [attachment()] for i, d in enumerate(dicts) if i in attached}
    made = RowViews(model).views(rows, attachments)
    validated = [model.model_validate(d | {"attachments": attachments.get(d["id"], [])}) for d in dicts]
    assert made == validated
    for view, want in zip(made, validated, strict=True):
        assert list(view.__dict__) == list(want.__dict__) == list(model.model_fields)
        assert {k: type(v) for k, v in view.__dict__.items()} == {k: type(v) for k, v in want.__dict__.items()}
        assert answer_json(view) == view.model_dump_json().encode() == want.model_dump_json().encode()
        assert view.model_fields_set == want.model_fields_set
        with pytest.raises(Exception, match="frozen"):
            view.id = uuid.uuid4()  # type: ignore[misc]


@settings(max_examples=150, deadline=None)
@given(st.lists(reply_rows, max_size=6), st.sets(st.integers(0, 5)), st.permutations(REPLY_COLUMNS))
def test_reply_views_are_the_validated_ones(dicts: list[dict[str, Any]], attached: set[int], order: list[str]) -> None:
    check(ReplyView, dicts, attached, order)


@settings(max_examples=150, deadline=None)
@given(st.lists(ticket_rows, max_size=4), st.sets(st.integers(0, 3)), st.permutations(TICKET_COLUMNS))
def test_ticket_views_are_the_validated_ones(dicts: list[dict[str, Any]], attached: set[int], order: list[str]) -> None:
    check(TicketView, dicts, attached, order)


def a_reply(**changes: Any) -> dict[str, Any]:
    return {"id": uuid.uuid4(), "ticket_id": uuid.uuid4(), "author_id": uuid.uuid4(), "author_role": "agent",
            "body": "hi", "internal": False, "source": "web", "email_message_id": None,
            "created_at": datetime.now(UTC)} | changes


def test_a_value_the_contract_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="author_role"):
        RowViews(ReplyView).views([row(a_reply(author_role="robot"))], {})


def test_a_missing_column_or_a_field_twice_is_refused() -> None:
    missing = a_reply()
    del missing["body"]
    with pytest.raises(ValueError, match="do not make its fields"):
        RowViews(ReplyView).views([row(missing)], {})
    twice = Row([*a_reply().values(), "again"])
    twice.names = (*a_reply(), "body")
    with pytest.raises(ValueError, match="do not make its fields"):
        RowViews(ReplyView).views([twice], {})


def test_marker_columns_anywhere_are_left_out() -> None:
    reply = a_reply()
    marked = row({"_attached": False} | reply | {"_counted": 1})
    assert RowViews(ReplyView).views([marked], {}) == [ReplyView.model_validate(reply)]


def test_each_view_gets_a_list_of_its_own() -> None:
    views = RowViews(ReplyView).views([row(a_reply()), row(a_reply())], {})
    assert views[0].attachments == views[1].attachments == []
    assert views[0].attachments is not views[1].attachments


def test_a_model_that_validates_or_has_other_field_types_is_refused() -> None:
    class Checked(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str

        @field_validator("name")
        @classmethod
        def upper(cls, value: str) -> str:
            return value.upper()

    class Loose(BaseModel):
        name: str

    class Nested(BaseModel):
        model_config = ConfigDict(extra="forbid")
        size: dict[str, int]

    for model in (Checked, Loose, Nested):
        with pytest.raises(TypeError):
            RowViews(model)
