"""Prepared statement shapes (service.adapters.core_on_asyncpg.CoreStatements.prepared): a page's
statements, built once per shape and reused with other values, must send exactly what building
them afresh sends — same SQL, same arguments. A value baked into a shape (an anonymous parameter
that varies between calls) would answer a later call with the first call's filter: caught here."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, literal, select

from service.adapters import tables
from service.adapters.core_on_asyncpg import CoreStatements, Shaped
from service.adapters.read_models import PageStatements
from service.handlers.read_model import SORT_KEYS, PageRequest, TicketFilter

STATUSES = ("new", "open", "pending", "resolved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


moments = st.integers(0, 10_000).map(lambda s: T0 + timedelta(seconds=s))
filters = st.builds(
    TicketFilter,
    customer_id=maybe(st.uuids()), assignee_id=maybe(st.uuids()), unassigned=st.booleans(),
    statuses=st.lists(st.sampled_from(STATUSES), unique=True, max_size=3).map(lambda v: tuple(sorted(v))),
    priorities=st.lists(st.sampled_from(PRIORITIES), unique=True, max_size=3).map(lambda v: tuple(sorted(v))),
    category_id=maybe(st.uuids()), created_from=maybe(moments), created_to=maybe(moments),
    title_contains=maybe(st.text("ab%_\\ ", min_size=1, max_size=6)), include_deleted=st.booleans(),
)


@st.composite
def pages(draw: st.DrawFn) -> PageRequest:
    sort = draw(st.sampled_from(sorted(SORT_KEYS)))
    after = None
    if draw(st.booleans()):
        values = {"created_at": draw(moments), "updated_at": draw(moments), "id": draw(st.uuids()),
                  "priority_rank": draw(st.integers(0, 3))}
        after = tuple(values[name] for name in SORT_KEYS[sort])
    return PageRequest(sort, draw(st.booleans()), after, draw(st.integers(1, 100)))


#: One cache across the examples, as in the service: later examples reuse earlier ones' shapes.
SHARED = CoreStatements()


@settings(max_examples=400, deadline=None)
@given(where=filters, page=pages(), staff=st.booleans(), cap=st.integers(1, 20_000))
def test_a_prepared_shape_sends_what_a_fresh_build_sends(where: TicketFilter, page: PageRequest, staff: bool,
                                                         cap: int) -> None:
    statements = PageStatements(where, page, staff=staff, count_cap=cap)
    for shaped in (statements.page(), statements.count_plan(), statements.counted_page()):
        prepared = SHARED.prepared(shaped)
        assert (prepared.sql, prepared.arguments(shaped.values)) == SHARED.render(shaped.build())


def test_a_shape_whose_values_do_not_match_its_parameters_fails_at_once() -> None:
    t = tables.tickets

    def build() -> Any:
        return select(literal(1)).where(t.c.id == bindparam("ticket_id", uuid.uuid4(), type_=t.c.id.type))

    with pytest.raises(ValueError, match="ticket_id"):
        CoreStatements().prepared(Shaped("missing", build, {}))
    with pytest.raises(ValueError, match="extra"):
        CoreStatements().prepared(Shaped("extra", build, {"ticket_id": uuid.uuid4(), "extra": 1}))


def test_constants_of_a_shape_are_sent_and_values_change_per_call() -> None:
    t = tables.tickets
    statements = CoreStatements()
    first, second = uuid.uuid4(), uuid.uuid4()

    def shaped(value: uuid.UUID) -> Shaped:
        return Shaped("one", lambda: select(literal(7)).where(t.c.id == bindparam("ticket_id", value, type_=t.c.id.type)),
                      {"ticket_id": value})

    statements.prepared(shaped(first))
    prepared = statements.prepared(shaped(second))
    assert sorted(map(str, prepared.arguments({"ticket_id": second}))) == sorted(["7", str(second)])
