"""The operator's commands against the running service: a poison command is listed, shown,
exported, replayed after the fix and processed; the outbox status names the relaying instance."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from ticket_contracts import Actor, CreateTicket, new_id, topics
from ticket_contracts.client import TicketClient

from service.ops.outbox import outbox_status
from service.runtime import Runtime
from service.settings import load_settings
from tests.support.cli import ok, tickets
from tests.support.streams import TopicReader
from tests.support.waiting import eventually

COMMANDS_DLQ = topics.dlq(topics.COMMANDS)


@pytest.fixture
async def poisoned_title(database_url: str) -> AsyncIterator[Any]:
    """A fault in the database (a trigger) that fails every insert of a ticket with one title, until fixed."""
    marker = f"poison-{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(database_url)
    function = f"fail_{marker.replace('-', '_')}"

    async def fix() -> None:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TRIGGER IF EXISTS {function} ON tickets"))
            await conn.execute(text(f"DROP FUNCTION IF EXISTS {function}()"))

    async with engine.begin() as conn:
        await conn.execute(text(f"""CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'ticket storage is broken'; END $$"""))
        await conn.execute(text(f"""CREATE TRIGGER {function} BEFORE INSERT ON tickets FOR EACH ROW
            WHEN (NEW.title = '{marker}') EXECUTE FUNCTION {function}()"""))
    try:
        yield marker, fix
    finally:
        await fix()
        await engine.dispose()


def _letters_for(output: TopicReader, key: bytes) -> list[Any]:
    return [r for r in output.by_key.get(key, []) if r.topic == COMMANDS_DLQ]


async def test_a_poison_command_is_listed_shown_exported_and_replayed_after_the_fix(
    client: TicketClient, output: TopicReader, service: Runtime, kafka_bootstrap: str, database_url: str,
    poisoned_title: Any, tmp_path: Path,
) -> None:
    marker, fix = poisoned_title
    cli = {"database_url": database_url, "bootstrap": kafka_bootstrap}
    actor = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    ticket_id = new_id()
    command = CreateTicket(actor=actor, payload={"ticket_id": ticket_id, "title": marker, "description": "x"})
    key, value = str(ticket_id).encode(), command.model_dump_json().encode()
    sent_headers = [("correlation_id", str(command.message_id).encode()), ("x-trace", b"1"), ("x-trace", b"2"),
                    ("x-binary", b"\xff\x00\xfe"), (topics.HEADER_REPLY_TO, client.reply_topic.encode())]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.COMMANDS, value, key=key, headers=sent_headers)
    finally:
        await producer.stop()

    letter = (await eventually(lambda: _letters_for(output, key), what="the dead letter"))[0]
    assert letter.value == value and letter.key == key
    assert list(letter.headers[:len(sent_headers)]) == sent_headers, "the original headers, exactly"
    added = [name for name, _ in letter.headers[len(sent_headers):]]
    assert added and all(name.startswith("dlq.") for name in added), added
    letter_id = f"{COMMANDS_DLQ}:{letter.partition}:{letter.offset}"
    error_class = dict(letter.headers)[topics.DLQ_HEADER_ERROR_CLASS].decode()

    listed = [json.loads(line) for line in (await ok("dlq", "list", "commands", "--json", **cli)).splitlines()]
    assert {row["topic"] for row in listed} == {COMMANDS_DLQ}
    mine = [row for row in listed if row["error_class"] == error_class]
    assert len(mine) == 1 and mine[0]["topic"] == COMMANDS_DLQ and mine[0]["count"] >= 1
    assert mine[0]["oldest"] <= mine[0]["newest"]
    everywhere = [json.loads(line) for line in (await ok("dlq", "list", "--json", **cli)).splitlines()]
    assert {row["topic"] for row in everywhere} == set(topics.DLQ_TOPICS), "every DLQ, empty ones with count 0"
    table = await ok("dlq", "list", **cli)
    assert error_class in table and topics.dlq(topics.QUERIES) in table

    shown = await ok("dlq", "show", "commands", "--letter", f"{letter.partition}:{letter.offset}", **cli)
    assert letter_id in shown and error_class in shown and "ticket storage is broken" in shown
    assert "x-trace: 1" in shown and "x-trace: 2" in shown and "x-binary: base64:/wD+" in shown
    assert marker not in shown, "the body only on request"
    assert marker in await ok("dlq", "show", COMMANDS_DLQ, "--letter", letter_id, "--body", **cli)

    exported = tmp_path / "letters.jsonl"
    await ok("dlq", "export", "commands", "--letter", letter_id, "--output", str(exported), **cli)
    (line,) = [json.loads(x) for x in exported.read_text().splitlines()]
    assert line["letter"] == letter_id and line["value"].encode() == value and line["key"] == str(ticket_id)
    assert {"name": "x-binary", "value_base64": "/wD+"} in line["headers"]

    await fix()
    replayed = await ok("dlq", "replay", "commands", "--letter", letter_id, **cli)
    assert f"replayed {letter_id} -> {topics.COMMANDS}" in replayed

    def results() -> list[dict[str, Any]]:
        return [r for r in output.json_for(ticket_id, topics.COMMAND_RESULTS)
                if r["command_id"] == str(command.message_id)]

    (result,) = await eventually(results, what="the replayed command's result")
    assert result["status"] == "accepted"
    events = await output.wait_for(ticket_id, 1, topic=topics.EVENTS)
    assert [e["type"] for e in events] == ["ticket.created"]

    await ok("dlq", "replay", "commands", "--letter", letter_id, **cli)  # again: the inbox makes it a no-op
    again = await eventually(lambda: len(r := results()) >= 2 and r, what="the stored result, re-sent")
    assert {r["message_id"] for r in again} == {result["message_id"]}
    assert len(output.json_for(ticket_id, topics.EVENTS)) == 1, "no second effect"
    assert len(_letters_for(output, key)) == 1, "the replayed command did not fail again"


async def test_refusals_are_one_line_not_a_traceback(database_url: str, kafka_bootstrap: str) -> None:
    cli = {"database_url": database_url, "bootstrap": kafka_bootstrap}
    for args, says in ((("dlq", "show", "tickets.events.v1"), "not a dead-letter topic"),
                       (("dlq", "replay", "commands"), "--letter"),
                       (("events", "republish", "--all", "--to-topic", topics.COMMANDS), "refusing"),
                       (("events", "republish"), "--all")):
        ran = await tickets(*args, **cli)
        assert ran.code != 0 and says in ran.err and "Traceback" not in ran.err, (args, ran.err)


async def test_outbox_status_names_the_relaying_instance(service: Runtime, client: TicketClient,
                                                         database_url: str, kafka_bootstrap: str) -> None:
    actor = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    await client.send(CreateTicket(actor=actor, payload={"ticket_id": new_id(), "title": "t", "description": "d"}))
    settings = load_settings(database_url=database_url, kafka_bootstrap=kafka_bootstrap)
    status = await eventually(lambda: _drained(settings), what="the outbox to drain")
    assert status.relay is not None and status.relay.instance_id == service.settings.instance_id
    assert status.history_rows >= 1 and status.last_seq

    shown = json.loads(await ok("outbox", "status", "--json", database_url=database_url, bootstrap=kafka_bootstrap))
    assert shown["relay"]["instance_id"] == service.settings.instance_id
    assert set(shown["events"]) == {"rows", "oldest", "oldest_age_s"}
    text_form = await ok("outbox", "status", database_url=database_url, bootstrap=kafka_bootstrap)
    assert service.settings.instance_id in text_form


async def _drained(settings: Any) -> Any:
    status = await outbox_status(settings)
    return status if status.events.rows == 0 and status.results.rows == 0 else None
