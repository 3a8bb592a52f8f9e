"""``tickets dlq …``, ``tickets outbox status`` and ``tickets events republish``: the operator's commands.

They read the broker and the database with the service's settings (``TICKETS_*``). What they print
goes to stdout; message bodies only where asked for (``dlq show --body``, ``dlq export``), and
every untrusted byte is escaped before it reaches a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ticket_contracts import topics

from service.ops import dlq, outbox
from service.ops.kafka import TopicNotFound
from service.settings import load_settings

T = TypeVar("T")


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``dlq``, ``outbox`` and ``events`` on the ``tickets`` parser."""
    group = commands.add_parser("dlq", help="list, show, export and replay dead letters")
    sub = group.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    p = sub.add_parser("list", help="letters per DLQ topic and error class, with the oldest and newest")
    p.add_argument("topic", nargs="*", help="DLQ topics, their source topics or commands|queries|users "
                   "(default: every DLQ topic)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.set_defaults(handler=_guarded(_dlq_list))

    for name, handler, text in (
        ("show", _dlq_show, "print letters: where from, the error, every header; the body with --body"),
        ("export", _dlq_export, "write letters as JSON Lines (bodies included: treat the file as sensitive)"),
        ("replay", _dlq_replay, "send letters back to their source topic (safe to repeat)"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("topic", help="a DLQ topic, its source topic, or commands|queries|users")
        p.add_argument("--letter", action="append", default=[], metavar="P:O",
                       help="a letter by <partition>:<offset> (or <topic>:<partition>:<offset>); repeatable")
        p.add_argument("--error-class", help="only letters with this dlq.error.class")
        if name == "replay":
            p.add_argument("--all", action="store_true", help="every letter of the topic (or of --error-class)")
            p.add_argument("--dry-run", action="store_true", help="say what would be replayed, send nothing")
        else:
            p.add_argument("--limit", type=int, help="at most this many letters")
        if name == "show":
            p.add_argument("--body", action="store_true", help="also print each letter's value")
        if name == "export":
            p.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
        p.set_defaults(handler=_guarded(handler))

    group = commands.add_parser("outbox", help="the transactional outbox")
    sub = group.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    p = sub.add_parser("status", help="backlog, age of the oldest unpublished row, which instance relays")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_guarded(_outbox_status))

    group = commands.add_parser("events", help="the ticket history")
    sub = group.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    text = ("publish history rows again, in seq order, with their original event ids (rows the relay "
            "has not published yet are left to it)")
    p = sub.add_parser("republish", help=text, description=text)
    p.add_argument("--all", action="store_true", help="the whole history")
    p.add_argument("--since-seq", type=int, help="rows with seq >= this")
    p.add_argument("--ticket", action="append", default=[], metavar="TICKET_ID", help="only this ticket; repeatable")
    p.add_argument("--to-topic", default=topics.EVENTS, help=f"where to (default {topics.EVENTS}; must exist)")
    p.add_argument("--dry-run", action="store_true", help="count the rows, publish nothing")
    p.set_defaults(handler=_guarded(_events_republish))


# ---- dlq --------------------------------------------------------------------------------------
def _dlq_list(args: argparse.Namespace) -> None:
    settings = load_settings()
    wanted = [dlq.resolve_topic(t) for t in args.topic] if args.topic else list(topics.DLQ_TOPICS)
    summaries = _run(dlq.summarise(settings, wanted))
    if args.json:  # one line per topic and error class; an empty topic is one line with count 0
        for s in summaries:
            print(json.dumps(s.as_json()))
        for t in wanted:
            if not any(s.topic == t for s in summaries):
                print(json.dumps(dlq.Summary(t, None).as_json()))
        return
    rows = [(s.topic, s.error_class, str(s.count), _when(s.oldest), _when(s.newest)) for s in summaries]
    rows += [(t, "-", "0", "-", "-") for t in wanted if not any(s.topic == t for s in summaries)]
    rows.sort(key=lambda r: (wanted.index(r[0]), r[1]))
    _table(("topic", "error class", "letters", "oldest", "newest"), rows)


def _selection(args: argparse.Namespace, topic: str) -> dlq.Selection:
    return dlq.Selection(frozenset(dlq.parse_letter_id(x, topic) for x in args.letter), args.error_class,
                         getattr(args, "limit", None))


def _dlq_show(args: argparse.Namespace) -> None:
    topic = dlq.resolve_topic(args.topic)
    selection = _selection(args, topic)

    async def show() -> int:
        count = 0
        async for letter in dlq.letters(load_settings(), topic, selection):
            _print_letter(letter, body=args.body)
            count += 1
        return count

    if not _run(show()):
        print(f"no matching letters on {topic}", file=sys.stderr)


def _print_letter(letter: dlq.Letter, *, body: bool) -> None:
    print(f"letter      {letter.id}")
    print(f"error       {_safe(letter.error_class)}: {_safe(letter.header(topics.DLQ_HEADER_ERROR_MESSAGE) or '')}")
    print(f"failed at   {_when(letter.failed_at)}")
    print(f"key         {_show_bytes(letter.key)}")
    print("headers")
    for name, value in letter.headers:
        print(f"  {_safe(name)}: {_show_bytes(value)}")
    size = len(letter.value) if letter.value is not None else 0
    if body:
        print(f"body        ({size} bytes)")
        print(f"  {_show_bytes(letter.value)}")
    else:
        print(f"body        {size} bytes (--body prints it)")
    print()


def _dlq_export(args: argparse.Namespace) -> None:
    topic = dlq.resolve_topic(args.topic)
    selection = _selection(args, topic)
    with (nullcontext(sys.stdout) if args.output == "-" else open(args.output, "w", encoding="utf-8")) as out:
        count = _run(dlq.export(load_settings(), topic, selection, out))
    print(f"exported {count} letters from {topic}", file=sys.stderr)


def _dlq_replay(args: argparse.Namespace) -> None:
    topic = dlq.resolve_topic(args.topic)
    if not args.all and not args.letter:
        raise dlq.DlqError("name the letters to replay (--letter P:O, repeatable) or pass --all")
    if args.all and args.letter:
        raise dlq.DlqError("--all and --letter exclude each other")
    report = _run(dlq.replay(load_settings(), topic, _selection(args, topic), dry_run=args.dry_run))
    verb = "would replay" if args.dry_run else "replayed"
    for r in report.sent:
        where = f"{r.topic}" + (f" partition {r.partition} offset {r.offset}" if r.offset is not None else "")
        print(f"{verb} {r.letter} -> {where}")
    for r in report.skipped:
        print(f"skipped {r.letter}: {r.skipped}")
    print(f"{len(report.sent)} {verb}, {len(report.skipped)} skipped", file=sys.stderr)
    if report.skipped:
        sys.exit(1)


# ---- outbox and events ----------------------------------------------------------------------
def _outbox_status(args: argparse.Namespace) -> None:
    status = _run(outbox.outbox_status(load_settings()))
    if args.json:
        print(json.dumps(status.as_json()))
        return
    for name, backlog in (("events", status.events), ("results", status.results)):
        age = backlog.age(status.now)
        oldest = f"oldest unpublished {_duration(age)} old ({_when(backlog.oldest)})" if age is not None else ""
        print(f"{name:<9}{backlog.rows:>8} unpublished   {oldest}".rstrip())
    print(f"history  {status.history_rows:>8} rows          last seq {status.last_seq or '-'}")
    relay = status.relay
    if relay is None:
        print("relay    no instance holds the relay lock: nothing is being published")
    else:
        who = relay.instance_id or f"application {relay.application_name!r}"
        print(f"relay    {_safe(who)} (PostgreSQL backend pid {relay.pid}, from {relay.client_addr or 'local socket'}, "
              f"connected {_when(relay.backend_start)})")


def _events_republish(args: argparse.Namespace) -> None:
    if not (args.all or args.since_seq is not None or args.ticket):
        raise outbox.OpsError("say what to republish: --all, --since-seq N and/or --ticket ID")
    if args.all and (args.since_seq is not None or args.ticket):
        raise outbox.OpsError("--all excludes --since-seq and --ticket")
    selection = outbox.HistorySelection(args.since_seq or 0, outbox.parse_tickets(args.ticket))
    done = _run(outbox.republish(load_settings(), selection, to_topic=args.to_topic, dry_run=args.dry_run))
    span = f" (seq {done.first_seq}..{done.last_seq})" if done.rows else ""
    print(f"{'would republish' if args.dry_run else 'republished'} {done.rows} events{span} to {done.topic}")


# ---- helpers ----------------------------------------------------------------------------------
def _run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except TopicNotFound as error:
        raise SystemExit(f"tickets: {error}") from None


def _guarded(handler: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], None]:
    """A refused request ends as one line on stderr and exit status 1, not a traceback."""

    def run(args: argparse.Namespace) -> None:
        logging.getLogger("aiokafka").setLevel(logging.WARNING)  # its per-assignment INFO lines are noise here
        try:
            handler(args)
        except (dlq.DlqError, outbox.OpsError) as error:
            raise SystemExit(f"tickets: {error}") from None

    return run


def _table(header: tuple[str, ...], rows: Sequence[tuple[str | None, ...]]) -> None:
    cells = [tuple(_safe(c if c is not None else "-") for c in r) for r in rows]
    widths = [max(len(x) for x in column) for column in zip(header, *cells, strict=True)]
    for row in (header, *cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _safe(value: str) -> str:
    """Untrusted text for a terminal: control characters (escape sequences) shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def _show_bytes(value: bytes | None) -> str:
    if value is None:
        return "(null)"
    try:
        return _safe(value.decode("utf-8"))
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(value).decode()


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"


def _duration(age: timedelta) -> str:
    seconds = max(0.0, age.total_seconds())
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def refill_dev_broker(settings: Any) -> None:
    """``tickets dev``: put the published history back on the fresh, empty memory-only broker."""
    from service.logging import get_logger

    for done in _run(outbox.refill(settings)):
        get_logger("tickets.cli").info("refilled the fresh broker from the database", topic=done.topic,
                                       rows=done.rows)
