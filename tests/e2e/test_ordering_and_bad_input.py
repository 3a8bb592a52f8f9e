"""Many interleaved commands keep per-ticket order; poison messages never stop the consumer."""

from __future__ import annotations

import json
import uuid

from aiokafka import AIOKafkaProducer
from ticket_contracts import Actor, CreateTicket, new_id, topics
from ticket_contracts.client import TicketClient

from tests.support.streams import TopicReader
from tests.support.waiting import eventually
from tests.support.workload import check_event_stream, interleaved_commands


async def test_1000_interleaved_commands_over_50_tickets(client: TicketClient, output: TopicReader,
                                                          directory, kafka_bootstrap: str) -> None:
    agents = [(await directory.add("agent")).user_id for _ in range(3)]
    commands = interleaved_commands(tickets=50, total=1000, agents=agents)
    resent = commands[100:150]  # the same message_ids again: must change nothing

    for command in commands + resent:
        await client.publish(command, topics.COMMANDS, key=command.payload.ticket_id)  # type: ignore[attr-defined]

    wanted = {c.message_id for c in commands}
    results = await eventually(lambda: _results_for(output, wanted), timeout=120, what="a result per command")
    assert set(results) == wanted
    final = {c.payload.ticket_id: 0 for c in commands}  # type: ignore[attr-defined]
    for result in results.values():
        if result["status"] == "accepted":
            final[uuid.UUID(result["ticket_id"])] = max(final[uuid.UUID(result["ticket_id"])], result["ticket_version"])
    assert all(v >= 1 for v in final.values()), "every ticket was created"
    expected_events = sum(final.values())
    events = await eventually(lambda: (e := [r for r in output.records if r.topic == topics.EVENTS
                                            and _ticket_of(r) in final]) and len({_id(r) for r in e}) >= expected_events and e,
                              timeout=60, what="every event")
    check_event_stream(events, final)
    assert len({_id(r) for r in events}) == expected_events, "duplicates produced no extra event"


async def test_poison_messages_go_to_the_dlq_and_later_commands_still_run(
    client: TicketClient, output: TopicReader, kafka_bootstrap: str
) -> None:
    ticket_id = new_id()
    key = str(ticket_id).encode()
    actor = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    bad_payload = CreateTicket(actor=actor, payload={"ticket_id": ticket_id, "title": "x", "description": "y"})
    invalid = json.loads(bad_payload.model_dump_json())
    invalid["payload"]["title"] = "t" * 201
    marker = uuid.uuid4().hex
    poison = [
        b"{not json " + marker.encode(),
        json.dumps({"type": "ticket.explode", "message_id": str(uuid.uuid4()), "marker": marker}).encode(),
        json.dumps({"type": "ticket.create", "marker": marker, "padding": "x" * 1_100_000}).encode(),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=4_000_000)
    await producer.start()
    try:
        for value in poison:
            await producer.send_and_wait(topics.COMMANDS, value, key=key)
        await producer.send_and_wait(topics.COMMANDS, json.dumps(invalid).encode(), key=key,
                                     headers=[("reply_to", client.reply_topic.encode())])
    finally:
        await producer.stop()
    good = CreateTicket(actor=actor, payload={"ticket_id": ticket_id, "title": "Fine", "description": "ok"})
    result = await client.send(good)

    assert result.status == "accepted", "a later command on the same partition still runs"
    dead = await eventually(lambda: (d := [r for r in output.by_key.get(key, [])
                                           if r.topic == topics.dlq(topics.COMMANDS)]) and len(d) >= 3 and d,
                            what="three dead letters")
    classes = sorted(dict(r.headers)[topics.DLQ_HEADER_ERROR_CLASS].decode() for r in dead)
    assert classes == ["MessageTooLarge", "UndecodableMessage", "UnknownMessageType"]
    for record in dead:
        headers = dict(record.headers)
        assert record.value in poison, "dead letters carry the message unchanged"
        assert headers[topics.DLQ_HEADER_SOURCE_TOPIC] == topics.COMMANDS.encode()
        assert int(headers[topics.DLQ_HEADER_SOURCE_OFFSET]) >= 0
        assert headers[topics.DLQ_HEADER_SOURCE_PARTITION].isdigit()
        assert headers[topics.DLQ_HEADER_FAILED_AT]
    rejected = await eventually(lambda: [r for r in output.json_for(ticket_id, topics.COMMAND_RESULTS)
                                         if r["command_id"] == invalid["message_id"]], what="validation result")
    assert rejected[0]["status"] == "rejected" and rejected[0]["reason"] == "validation_error"
    assert "title" in rejected[0]["message"] and "t" * 50 not in rejected[0]["message"]


def _results_for(output: TopicReader, wanted: set[uuid.UUID]) -> dict[uuid.UUID, dict] | None:
    found: dict[uuid.UUID, dict] = {}
    for record in output.records:
        if record.topic == topics.COMMAND_RESULTS:
            result = json.loads(record.value)
            command_id = uuid.UUID(result["command_id"])
            if command_id in wanted:
                assert found.get(command_id, result)["message_id"] == result["message_id"], "one result per command"
                found[command_id] = result
    return found if len(found) == len(wanted) else None


def _ticket_of(record) -> uuid.UUID:
    return uuid.UUID(record.key.decode())


def _id(record) -> str:
    return json.loads(record.value)["event_id"]




async def test_text_postgresql_cannot_store_is_a_validation_error_not_a_jammed_consumer(
    client: TicketClient,
) -> None:
    actor = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    ticket_id = new_id()
    nul = CreateTicket(actor=actor, payload={"ticket_id": ticket_id, "title": "NUL", "description": "a\x00b"})

    rejected = await client.send(nul)
    accepted = await client.send(CreateTicket(actor=actor, payload={"ticket_id": ticket_id, "title": "ok",
                                                                    "description": "fine"}))

    assert (rejected.status, rejected.reason) == ("rejected", "validation_error")
    assert "NUL" in (rejected.message or "") and rejected.actor is not None
    assert accepted.status == "accepted"
