"""JSON Schema export of every message, for teams that do not use Python.

    python -m ticket_contracts.schema OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from .answers import Answer
from .commands import Command
from .events import Event
from .ops import Heartbeat
from .queries import Query
from .results import CommandResult
from .users import UserEvent

SCHEMAS: dict[str, Any] = {
    "command": Command,
    "query": Query,
    "answer": Answer,
    "event": Event,
    "command-result": CommandResult,
    "user-event": UserEvent,
    "heartbeat": Heartbeat,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    return {name: TypeAdapter(tp).json_schema() for name, tp in SCHEMAS.items()}


def export(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = out_dir / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover
    for p in export(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")):
        print(p)
