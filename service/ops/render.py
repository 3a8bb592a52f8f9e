"""How the operator's commands print: tables, letters, times — and untrusted bytes, escaped."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from ticket_contracts import topics

from service.ops.dlq import Letter


def print_letter(letter: Letter, *, body: bool) -> None:
    print(f"letter      {letter.id}")
    print(f"error       {safe(letter.error_class)}: {safe(letter.header(topics.DLQ_HEADER_ERROR_MESSAGE) or '')}")
    print(f"failed at   {when(letter.failed_at)}")
    print(f"key         {show_bytes(letter.key)}")
    print("headers")
    for name, value in letter.headers:
        print(f"  {safe(name)}: {show_bytes(value)}")
    size = len(letter.value) if letter.value is not None else 0
    if body:
        print(f"body        ({size} bytes)")
        print(f"  {show_bytes(letter.value)}")
    else:
        print(f"body        {size} bytes (--body prints it)")
    print()


def table(header: tuple[str, ...], rows: Sequence[tuple[str | None, ...]]) -> None:
    cells = [tuple(safe(c if c is not None else "-") for c in r) for r in rows]
    widths = [max(len(x) for x in column) for column in zip(header, *cells, strict=True)]
    for row in (header, *cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def safe(value: str) -> str:
    """Untrusted text for a terminal: control characters (escape sequences) shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def show_bytes(value: bytes | None) -> str:
    if value is None:
        return "(null)"
    try:
        return safe(value.decode("utf-8"))
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


def when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"


def duration(age: timedelta) -> str:
    seconds = max(0.0, age.total_seconds())
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
