"""An answer's Python cost without the database or Kafka: the views a read model builds from its rows,
and the JSON written to the reply topic — for the two answers the query benchmark measures most.

    .venv/bin/python -m bench.answers [--repeat 2000]

Rows are made in this process with the values asyncpg hands over (asyncpg's own UUID subclass, UTC
datetimes), as tuples (``fields`` iterates an ``asyncpg.Record`` the same way); a ``ticket.thread`` page of 200 replies of ~320 characters, a ``ticket.my`` page of 25
tickets). Per answer, the median and the 10th percentile of ``--repeat`` runs (the garbage
collector on, as in the service), in µs:

* ``fields`` — the views' dicts from the rows (as ``read_models`` made them before 2026-12-04);
* ``views`` — pydantic validating them into contract views (one ``TypeAdapter`` call per page);
* ``row views`` — what the read model does since: views straight from the rows, no validation
  (``adapters.row_views``; the same views, tests/unit/test_row_views.py);
* ``pydantic json`` — ``answer.model_dump_json()``, how answers were written before;
* ``answer_json`` — what the service writes them with now (``adapters.serialization``).

Prints a table and writes ``bench/results/answers.json``. See bench/README.md, "Answers on the wire".
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asyncpg.pgproto.pgproto import UUID as AsyncpgUUID
from ticket_contracts.answers import AnswerBase, ThreadAnswer, TicketPageAnswer

from pydantic import TypeAdapter
from ticket_contracts.views import ReplyView, TicketView

from service.adapters.row_views import RowViews
from service.adapters.serialization import answer_json

COLUMNS = ("fields", "views", "row views", "pydantic json", "answer_json")
RESULTS = Path(__file__).parent / "results"
START = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


class Row(tuple[Any, ...]):
    """Enough of an ``asyncpg.Record`` for the views: values by position (in C, as a record's are)
    and their names."""

    names: list[str]

    def keys(self) -> list[str]:
        return self.names



def rows(fields: dict[str, Callable[[int], Any]], count: int) -> list[Any]:
    names = [*fields, "_attached"]
    made = []
    for i in range(count):
        row = Row([make(i) for make in fields.values()] + [False])
        row.names = names
        made.append(row)
    return made


def pg_id(_: int) -> uuid.UUID:
    return AsyncpgUUID(str(uuid.uuid4()))


REPLY = {
    "id": pg_id, "ticket_id": pg_id, "author_id": pg_id, "author_role": lambda i: "agent" if i % 2 else "customer",
    "body": lambda i: f"Reply {i}: " + "the printer on the third floor still jams " * 7, "internal": lambda i: i % 5 == 0,
    "source": lambda i: "web", "email_message_id": lambda i: None, "created_at": lambda i: START + timedelta(seconds=i),
}
TICKET = {
    "id": pg_id, "number": lambda i: f"T-{i:06d}", "customer_id": pg_id, "created_by": pg_id,
    "title": lambda i: f"Printer jam {i}", "description": lambda i: "It jams on every second page. " * 8,
    "status": lambda i: "open", "status_reason": lambda i: None, "priority": lambda i: "high",
    "category_id": lambda i: None, "channel": lambda i: "web", "tags": lambda i: ["printer"], "assignee_id": pg_id,
    "version": lambda i: 3, "created_at": lambda i: START, "updated_at": lambda i: START, "status_changed_at": lambda i: START,
    "first_response_at": lambda i: START, "resolved_at": lambda i: None, "closed_at": lambda i: None,
    "deleted_at": lambda i: None, "follow_up_of": lambda i: None, "merged_into": lambda i: None,
    "merged_from": lambda i: [], "time_spent_minutes": lambda i: 30, "follower_ids": lambda i: [],
}


def _view_fields(rows: list[Any], attachments: dict[uuid.UUID, list[Any]]) -> list[dict[str, Any]]:
    """The views' dicts as the read model made them for validation before ``RowViews``."""
    names = [k for k in rows[0].keys() if not k.startswith("_")]
    return [dict(zip(names, row, strict=False), attachments=attachments.get(row[0]) or []) for row in rows]


def timed(call: Callable[[], Any], repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    samples.sort()
    return {"p50_us": round(samples[len(samples) // 2] * 1e6, 1), "p10_us": round(samples[len(samples) // 10] * 1e6, 1)}


def measure(made: list[Any], model: Any, answer: Callable[[list[Any]], AnswerBase],
            repeat: int) -> dict[str, Any]:
    adapter, row_views = TypeAdapter(list[model]), RowViews(model)
    fields = _view_fields(made, {})
    views = adapter.validate_python(fields)
    assert row_views.views(made, {}) == views
    out = answer(views)
    assert answer_json(out) == out.model_dump_json().encode()
    return {"items": len(made), "json_bytes": len(answer_json(out)),
            "fields": timed(lambda: _view_fields(made, {}), repeat),
            "views": timed(lambda: adapter.validate_python(fields), repeat),
            "row views": timed(lambda: row_views.views(made, {}), repeat),
            "pydantic json": timed(out.model_dump_json, repeat),
            "answer_json": timed(lambda: answer_json(out), repeat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=RESULTS / "answers.json")
    args = parser.parse_args()
    common = {"causation_id": uuid.uuid4(), "correlation_id": uuid.uuid4()}
    report = {
        "started_at": datetime.now(UTC).isoformat(),
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version()},
        "answers": {
            "ticket.thread, 200 replies": measure(rows(REPLY, 200), ReplyView, lambda views: ThreadAnswer(
                **common, query_type="ticket.thread", ticket_id=uuid.uuid4(), replies=views, next_cursor=None),
                args.repeat),
            "ticket.my, page of 25": measure(rows(TICKET, 25), TicketView, lambda views: TicketPageAnswer(
                **common, query_type="ticket.my", items=views, next_cursor="eyJrIjpbXX0", total=40),
                args.repeat),
        },
    }
    print(f"{'answer':<28} {'items':>5} {'bytes':>7} " + " ".join(f"{k:>16}" for k in COLUMNS))
    for name, row in report["answers"].items():
        print(f"{name:<28} {row['items']:>5} {row['json_bytes']:>7} "
              + " ".join(f"{row[k]['p50_us']:>16.1f}" for k in COLUMNS))
    print("(µs per answer, median; the json also holds the 10th percentiles)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
