"""Opaque keyset cursors: round trips, and every way a cursor can be wrong (no I/O)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from service.domain.errors import InvalidInput
from service.handlers.cursors import decode_page, decode_position, encode_page, encode_position
from service.handlers.read_model import Total

NOW = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
ID = uuid.uuid4()


@pytest.mark.parametrize(("sort", "key"), [("created", (NOW, ID)), ("updated", (NOW, ID)),
                                           ("priority", (4, NOW, ID))])
def test_a_page_cursor_round_trips_exactly(sort: str, key: tuple[object, ...]) -> None:
    cursor = encode_page(sort, True, key, "f" * 16, Total(12_345, exact=False))

    decoded = decode_page(cursor, sort, True, "f" * 16)

    assert decoded.after == key and decoded.total == Total(12_345, exact=False)
    assert all(c.isalnum() or c in "-_" for c in cursor)  # URL-safe, no padding


def test_a_thread_cursor_round_trips_to_the_microsecond() -> None:
    assert decode_position(encode_position((NOW, ID))) == (NOW, ID)


def _forge(doc: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


GOOD = {"s": "created", "d": True, "k": [NOW.isoformat(), str(ID)], "f": "f" * 16, "t": 3, "x": True}


@pytest.mark.parametrize("cursor", [
    "", "!!!", "bm90IGpzb24", _forge([1]), _forge({}),
    _forge(GOOD | {"s": "updated"}), _forge(GOOD | {"d": False}), _forge(GOOD | {"f": "0" * 16}),
    _forge(GOOD | {"k": [NOW.isoformat()]}), _forge(GOOD | {"k": ["yesterday", str(ID)]}),
    _forge(GOOD | {"k": [NOW.replace(tzinfo=None).isoformat(), str(ID)]}), _forge(GOOD | {"k": [NOW.isoformat(), "x"]}),
    _forge(GOOD | {"t": -1}), _forge(GOOD | {"t": "3"}), _forge(GOOD | {"x": 1}),
])
def test_a_cursor_not_issued_for_this_listing_is_invalid_input(cursor: str) -> None:
    with pytest.raises(InvalidInput):
        decode_page(cursor, "created", True, "f" * 16)


def test_the_forged_good_document_is_accepted() -> None:  # the cases above differ from it in one field
    assert decode_page(_forge(GOOD), "created", True, "f" * 16).after == (NOW, ID)


@pytest.mark.parametrize("rank", [0, 5, "4", 2.0])
def test_a_priority_rank_outside_1_to_4_is_invalid(rank: object) -> None:
    with pytest.raises(InvalidInput):
        decode_page(_forge(GOOD | {"s": "priority", "k": [rank, NOW.isoformat(), str(ID)]}), "priority", True, "f" * 16)


def test_a_filters_fingerprint_is_stable_across_releases() -> None:
    """Cursors carry it: a release that changed it would turn every cursor in flight into an error."""
    from service.handlers.read_model import TicketFilter

    issued = TicketFilter(customer_id=uuid.UUID("00000000-0000-4000-8000-000000000001"), statuses=("new", "open"),
                          created_from=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), title_contains="printer")
    assert issued.fingerprint() == "d1b746661dee6859"
    assert TicketFilter().fingerprint() == "641da943d1782178"
