"""What the operator's commands print of hostile bytes, and how they parse their arguments."""

from __future__ import annotations

import pytest

from service.cli import build_parser
from service.ops.cli import _safe, _show_bytes


def test_escape_sequences_never_reach_the_terminal() -> None:
    assert _safe("ok\x1b[2Jgone\r\n") == "ok\\x1b[2Jgone\\r\\n"
    assert _show_bytes(b"\xff\x00") == "base64:/wA="
    assert _show_bytes(None) == "(null)"
    assert _show_bytes("héllo ✓".encode()) == "héllo ✓"


@pytest.mark.parametrize("argv", [
    ["dlq", "list"], ["dlq", "list", "commands", "--json"], ["dlq", "show", "commands", "--letter", "0:1", "--body"],
    ["dlq", "export", "queries", "-o", "x.jsonl"], ["dlq", "replay", "users", "--all", "--dry-run"],
    ["outbox", "status", "--json"], ["events", "republish", "--since-seq", "5", "--ticket", "t", "--to-topic", "x"],
    ["dev", "--no-refill"],
])
def test_the_operator_commands_parse(argv: list[str]) -> None:
    assert callable(build_parser().parse_args(argv).handler)
