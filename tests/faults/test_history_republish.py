"""After a dev restart the memory-only broker is empty: the history comes back from the database —
`tickets events republish --all` by hand, and `tickets dev` by itself at start — with the same event
ids, in order."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from ticket_contracts import Actor, AddReply, ChangeStatus, CreateTicket, new_id, topics
from ticket_contracts.client import TicketClient

from service.app import running
from service.devstack import EmbeddedKafka, ensure_topics, free_port
from service.ops.outbox import outbox_status, refill
from service.settings import load_settings
from tests.faults.conftest import Stack
from tests.support.cli import ok
from tests.support.streams import TopicReader
from tests.support.waiting import eventually


async def _some_history(client: TicketClient, tickets: int = 4) -> None:
    actor = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    agent = Actor(user_id=uuid.uuid4(), role="agent")
    for _ in range(tickets):
        ticket_id = new_id()
        assert (await client.send(CreateTicket(actor=actor, payload={
            "ticket_id": ticket_id, "title": "t", "description": "d"}))).status == "accepted"
        assert (await client.send(AddReply(actor=actor, payload={
            "ticket_id": ticket_id, "reply_id": new_id(), "body": "more"}))).status == "accepted"
        assert (await client.send(ChangeStatus(actor=agent, payload={
            "ticket_id": ticket_id, "status": "in_progress"}))).status == "accepted"


async def _history(database_url: str) -> list[tuple[str, str]]:
    """(ticket id, event id) of every history row, in seq order."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT ticket_id, event_id FROM ticket_events ORDER BY seq"))
            return [(str(r.ticket_id), str(r.event_id)) for r in rows]
    finally:
        await engine.dispose()


_last_records: list[tuple[object, list[tuple[str, bytes]]]] = []


async def _events_on(bootstrap: str, expected: int) -> list[tuple[str, str]]:
    reader = await TopicReader(bootstrap, topics.EVENTS).start()
    try:
        await eventually(lambda: len(reader.records) >= expected, what=f"{expected} events")
        _last_records[:] = [(r, list(r.headers)) for r in reader.records]
        return [(r.key.decode(), json.loads(r.value)["event_id"]) for r in reader.records]
    finally:
        await reader.stop()


def _in_history_order(published: list[tuple[str, str]], history: list[tuple[str, str]]) -> bool:
    """Each ticket's events arrive in the order of the history (per-key order is what Kafka keeps)."""
    for ticket in {t for t, _ in history}:
        if [e for t, e in published if t == ticket] != [e for t, e in history if t == ticket]:
            return False
    return True


async def test_republish_all_refills_a_fresh_broker_with_the_same_event_ids_in_order(stack: Stack,
                                                                                   tmp_path: Path) -> None:
    settings = load_settings(database_url=stack.database_url, kafka_bootstrap=stack.bootstrap, http_port=0,
                             consumer_group=f"republish-{uuid.uuid4().hex[:8]}", relay_poll_interval_s=0.5)
    async with running(settings):
        async with TicketClient(stack.bootstrap) as client:
            await _some_history(client)
        await eventually(lambda: _drained(settings), what="every event published")
    history = await _history(stack.database_url)
    assert len(history) == 12

    fresh = EmbeddedKafka(log_dir=tmp_path)  # the dev broker after a restart: memory-only, empty
    fresh.start()
    try:
        await ensure_topics(fresh.bootstrap, partitions=4)
        said = await ok("events", "republish", "--all", database_url=stack.database_url, bootstrap=fresh.bootstrap)
        assert "republished 12 events" in said
        published = await _events_on(fresh.bootstrap, len(history))
        assert sorted(published) == sorted(history), "the same event ids, each once"
        assert _in_history_order(published, history)
        assert all(dict(h)[topics.HEADER_TYPE].decode() == json.loads(r.value)["type"]
                   and topics.HEADER_CAUSATION_ID in dict(h) for r, h in _last_records), "the relay's headers"

        one_ticket = history[0][0]
        said = await ok("events", "republish", "--ticket", one_ticket, "--since-seq", "2",
                        database_url=stack.database_url, bootstrap=fresh.bootstrap)
        assert "republished 2 events" in said
        again = await _events_on(fresh.bootstrap, len(history) + 2)
        theirs = [e for t, e in history if t == one_ticket]
        assert [e for t, e in again if t == one_ticket] == theirs + theirs[1:], "seq >= 2 of that ticket, again"
    finally:
        fresh.stop()

    refilled = EmbeddedKafka(log_dir=tmp_path)
    refilled.start()
    try:
        await ensure_topics(refilled.bootstrap, partitions=4)
        done = await refill(settings.model_copy(update={"kafka_bootstrap": refilled.bootstrap}))
        assert {(d.topic, d.rows) for d in done} == {(topics.EVENTS, 12), (topics.COMMAND_RESULTS, 12)}
        assert sorted(await _events_on(refilled.bootstrap, len(history))) == sorted(history)
        assert await refill(settings.model_copy(update={"kafka_bootstrap": refilled.bootstrap})) == [], \
            "a topic that has records is left alone"
    finally:
        refilled.stop()


async def _drained(settings: object) -> bool:
    status = await outbox_status(settings)  # type: ignore[arg-type]
    return status.events.rows == 0 and status.results.rows == 0


def _dev(data_dir: Path, kafka_port: int, http_port: int, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {"TICKETS_HTTP_PORT": str(http_port), "TICKETS_LOG_FORMAT": "json",
                        "TICKETS_RELAY_POLL_INTERVAL_S": "0.5"}
    return subprocess.Popen([sys.executable, "-m", "service.cli", "dev", "--data-dir", str(data_dir),
                             "--kafka-port", str(kafka_port)], env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _ready(process: subprocess.Popen[bytes], http_port: int, log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"tickets dev exited with {process.returncode}; see {log}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


async def test_tickets_dev_restart_loses_no_events(tmp_path: Path) -> None:
    # Not under tmp_path: PostgreSQL runs as its own user, which must reach the data directory.
    scratch = Path(tempfile.mkdtemp(prefix="tickets-dev-test-"))
    data_dir, log = scratch / "data", tmp_path / "dev.log"
    kafka_port, http_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{kafka_port}"
    process = _dev(data_dir, kafka_port, http_port, log)
    try:
        await eventually(lambda: _ready(process, http_port, log), timeout=90, interval=0.2, what="tickets dev")
        async with TicketClient(bootstrap) as client:
            await _some_history(client, tickets=2)
        before = await _events_on(bootstrap, 6)
        process.send_signal(signal.SIGTERM)
        assert process.wait(90) == 0

        process = _dev(data_dir, kafka_port, http_port, log)
        await eventually(lambda: _ready(process, http_port, log), timeout=90, interval=0.2, what="tickets dev again")
        after = await _events_on(bootstrap, 6)
        assert sorted(after) == sorted(before), "the same event ids on the restarted broker"
        assert _in_history_order(after, before), "each ticket's events in the same order"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(scratch, ignore_errors=True)
