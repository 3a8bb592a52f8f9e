"""Logs in JSON mode are JSON everywhere: `tickets migrate` (Alembic's lines, each once) and a failed
start (one line, the traceback as a field, never local variables)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.infra import create_database, drop_database

TICKETS = str(Path(sys.executable).with_name("tickets"))


def run_tickets(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TICKETS, *args], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"TICKETS_LOG_FORMAT": "json"} | env)


def json_lines(stream: str) -> list[dict]:
    lines = [line for line in stream.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # raises on any line that is not JSON
    assert all(isinstance(p, dict) and "event" in p and "level" in p for p in parsed)
    return parsed


@pytest.fixture
async def empty_database(database_server_url: str) -> AsyncIterator[str]:
    url = await create_database(database_server_url)
    yield url
    await drop_database(database_server_url, url)


async def test_migrate_logs_json_lines_and_every_alembic_line_once(empty_database: str) -> None:
    done = run_tickets("migrate", TICKETS_DATABASE_URL=empty_database)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    lines = json_lines(done.stderr)
    upgrades = [line["event"] for line in lines if line["event"].startswith("Running upgrade")]
    assert upgrades and len(upgrades) == len(set(upgrades))
    assert lines[-1]["event"] == "database schema is at head"


def test_a_failed_start_is_one_json_line_with_the_traceback_as_a_field() -> None:
    done = run_tickets("run", TICKETS_DATABASE_URL="postgresql+asyncpg://postgres:hunter2secret@127.0.0.1:1/x",
                       TICKETS_KAFKA_BOOTSTRAP="127.0.0.1:1", TICKETS_HTTP_PORT="0")
    assert done.returncode == 1
    lines = json_lines(done.stderr)
    [failure] = [line for line in lines if "exception" in line]
    assert failure["level"] == "error" and failure["event"] == "tickets failed"
    frames = failure["exception"][0]["frames"]
    assert frames and all("locals" not in frame for frame in frames)
    assert "hunter2secret" not in done.stderr
