"""Opaque keyset cursors: unpadded base64url of a small JSON document.

A ticket-page cursor carries the sort and its direction, the sort key (``SORT_KEYS``) of the last
ticket returned, the fingerprint of the filter it was issued for, and the total counted for the
first page — later pages repeat that total instead of counting again. A cursor used with another
sort, direction or filter (or scope: the filter includes it) is a ``validation_error``.

Cursors are not signed: editing one only moves the editor's own position or changes the total
shown to them; what they may see is decided by the actor, never by the cursor.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from service.domain.errors import InvalidInput

from .read_model import SORT_KEYS, SortKey, Total

THREAD_KEY = ("created_at", "id")


@dataclass(frozen=True, slots=True)
class PageCursor:
    after: SortKey
    total: Total


def encode_page(sort: str, descending: bool, after: SortKey, fingerprint: str, total: Total) -> str:
    return _encode({"s": sort, "d": descending, "k": _dump_key(after), "f": fingerprint,
                    "t": total.value, "x": total.exact})


def decode_page(cursor: str, sort: str, descending: bool, fingerprint: str) -> PageCursor:
    doc = _decode(cursor)
    if doc.get("s") != sort or doc.get("d") is not descending:
        raise InvalidInput("cursor: it was issued for another sort order")
    if doc.get("f") != fingerprint:
        raise InvalidInput("cursor: it was issued for other filters")
    total, exact = doc.get("t"), doc.get("x")
    if type(total) is not int or total < 0 or type(exact) is not bool:
        raise _invalid()
    return PageCursor(_load_key(doc.get("k"), SORT_KEYS[sort]), Total(total, exact))


def encode_position(after: SortKey) -> str:
    """A thread cursor: the (created_at, id) of the last reply returned."""
    return _encode({"k": _dump_key(after)})


def decode_position(cursor: str) -> SortKey:
    return _load_key(_decode(cursor).get("k"), THREAD_KEY)


def _encode(doc: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(doc)).rstrip(b"=").decode()


def _decode(cursor: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:  # orjson's JSONDecodeError is a ValueError
        raise _invalid() from error
    if not isinstance(doc, dict):
        raise _invalid()
    return doc


def _dump_key(key: SortKey) -> list[Any]:
    return [v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v for v in key]


def _load_key(values: Any, names: tuple[str, ...]) -> SortKey:
    if not isinstance(values, list) or len(values) != len(names):
        raise _invalid()
    try:
        return tuple(_load_value(name, value) for name, value in zip(names, values, strict=True))
    except (ValueError, TypeError) as error:
        raise _invalid() from error


def _load_value(name: str, value: Any) -> Any:
    if name == "id":
        return uuid.UUID(value)
    if name == "priority_rank":
        if type(value) is not int or not 1 <= value <= 4:
            raise ValueError(name)
        return value
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(name)
    return moment


def _invalid() -> InvalidInput:
    return InvalidInput("cursor: not a cursor this service issued")
