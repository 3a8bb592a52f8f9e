"""The attacks of issue 8, against the running service on a real broker and database. Each gets the
answer the issue names, and the next valid message on the same partition is still processed."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from ticket_contracts import Actor, CreateTicket, new_id, topics
from ticket_contracts.answers import ErrorAnswer, TicketAnswer
from ticket_contracts.client import TicketClient
from ticket_contracts.queries import GetTicket

from service.devstack import ensure_topics
from tests.support.streams import TopicReader
from tests.support.waiting import eventually

#: Another service's topic that a hostile reply_to names; it exists, so a write would succeed.
FOREIGN = "notifications.commands.v1"


@pytest.fixture(scope="module")
async def producer(attack_broker: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=attack_broker, linger_ms=0)
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture(scope="module")
async def foreign(attack_broker: str, service: Any) -> AsyncIterator[TopicReader]:
    await ensure_topics(attack_broker, [FOREIGN], partitions=1)
    reader = await TopicReader(attack_broker, FOREIGN).start()
    yield reader
    await reader.stop()


def customer() -> Actor:
    return Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())


def create(actor: Actor, ticket_id: uuid.UUID, title: str = "Fine") -> CreateTicket:
    return CreateTicket(actor=actor, payload={"ticket_id": ticket_id, "title": title, "description": "ok"})


def nested_10000_deep(message: dict[str, Any]) -> bytes:
    """About 20 KB: a valid envelope whose payload carries JSON nested 10,000 deep."""
    value = json.dumps(message).encode()
    return value[:-1] + b', "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"


async def dead_letter(output: TopicReader, topic: str, key: bytes, value: bytes) -> dict[str, str]:
    found = await eventually(lambda: [r for r in output.by_key.get(key, [])
                                      if r.topic == topics.dlq(topic) and r.value == value],
                             what=f"the dead letter on {topics.dlq(topic)}")
    assert len(found) == 1
    headers = {k: v.decode() for k, v in found[0].headers}
    assert headers[topics.DLQ_HEADER_SOURCE_TOPIC] == topic
    return headers


async def test_a_command_nested_10000_deep_is_dead_lettered_and_the_partition_moves_on(
    client: TicketClient, output: TopicReader, producer: AIOKafkaProducer,
) -> None:
    actor, ticket_id = customer(), new_id()
    key = str(ticket_id).encode()
    poison = nested_10000_deep(json.loads(create(actor, ticket_id, "Poison").model_dump_json()))
    assert 19_000 < len(poison) < 21_000

    await producer.send_and_wait(topics.COMMANDS, poison, key=key)
    result = await client.send(create(actor, ticket_id))

    assert result.status == "accepted", "the next command on the same partition is processed"
    headers = await dead_letter(output, topics.COMMANDS, key, poison)
    assert headers[topics.DLQ_HEADER_ERROR_CLASS] == "LimitExceeded"
    assert "nested" in headers[topics.DLQ_HEADER_ERROR_MESSAGE] or "recursion" in headers[topics.DLQ_HEADER_ERROR_MESSAGE]


async def test_a_query_nested_10000_deep_is_dead_lettered_and_the_partition_moves_on(
    client: TicketClient, output: TopicReader, producer: AIOKafkaProducer,
) -> None:
    actor, ticket_id = customer(), new_id()
    key = str(ticket_id).encode()
    assert (await client.send(create(actor, ticket_id))).status == "accepted"
    query = GetTicket(actor=actor, payload={"ticket_id": ticket_id})
    poison = nested_10000_deep(json.loads(query.model_dump_json()))

    await producer.send_and_wait(topics.QUERIES, poison, key=key,
                                 headers=[(topics.HEADER_REPLY_TO, client.reply_topic.encode())])
    answer = await client.request(GetTicket(actor=actor, payload={"ticket_id": ticket_id}))

    assert isinstance(answer, TicketAnswer) and answer.ticket.id == ticket_id
    headers = await dead_letter(output, topics.QUERIES, key, poison)
    assert headers[topics.DLQ_HEADER_ERROR_CLASS] == "LimitExceeded"


async def test_a_command_without_message_id_is_dead_lettered_never_given_an_id(
    client: TicketClient, output: TopicReader, producer: AIOKafkaProducer,
) -> None:
    actor, ticket_id = customer(), new_id()
    key = str(ticket_id).encode()
    raw = json.loads(create(actor, ticket_id, "No id").model_dump_json())
    del raw["message_id"]
    poison = json.dumps(raw).encode()

    await producer.send_and_wait(topics.COMMANDS, poison, key=key,
                                 headers=[(topics.HEADER_REPLY_TO, client.reply_topic.encode())])
    result = await client.send(create(actor, ticket_id, "Second"))

    assert result.status == "accepted", "the ticket did not exist: the id-less create was never run"
    headers = await dead_letter(output, topics.COMMANDS, key, poison)
    assert headers[topics.DLQ_HEADER_ERROR_CLASS] == "InvalidEnvelope"
    results = await output.wait_for(ticket_id, 1, topic=topics.COMMAND_RESULTS)
    assert [r["command_id"] for r in results] == [str(result.command_id)], "no result for the id-less command"


async def test_a_query_without_message_id_is_dead_lettered(
    client: TicketClient, output: TopicReader, producer: AIOKafkaProducer,
) -> None:
    actor, ticket_id = customer(), new_id()
    key = str(ticket_id).encode()
    raw = json.loads(GetTicket(actor=actor, payload={"ticket_id": ticket_id}).model_dump_json())
    del raw["message_id"]
    poison = json.dumps(raw).encode()

    await producer.send_and_wait(topics.QUERIES, poison, key=key,
                                 headers=[(topics.HEADER_REPLY_TO, client.reply_topic.encode())])
    answer = await client.request(GetTicket(actor=actor, payload={"ticket_id": ticket_id}))

    assert isinstance(answer, ErrorAnswer) and answer.reason == "not_found", "the next query is answered"
    headers = await dead_letter(output, topics.QUERIES, key, poison)
    assert headers[topics.DLQ_HEADER_ERROR_CLASS] == "InvalidEnvelope"


async def test_a_command_with_a_foreign_reply_to_is_rejected_and_nothing_reaches_that_topic(
    client: TicketClient, output: TopicReader, producer: AIOKafkaProducer, foreign: TopicReader,
) -> None:
    actor, ticket_id = customer(), new_id()
    key = str(ticket_id).encode()
    hostile = create(actor, ticket_id, "Hostile")

    await producer.send_and_wait(topics.COMMANDS, hostile.model_dump_json().encode(), key=key,
                                 headers=[(topics.HEADER_REPLY_TO, FOREIGN.encode())])
    result = await client.send(create(actor, ticket_id, "Fine"))

    assert result.status == "accepted", "the next command on the same partition is processed (and the ticket is new)"
    [refused] = await eventually(lambda: [r for r in output.json_for(ticket_id, topics.COMMAND_RESULTS)
                                          if r["command_id"] == str(hostile.message_id)], what="the rejection")
    assert (refused["status"], refused["reason"]) == ("rejected", "validation_error")
    assert "reply_to is refused" in refused["message"]
    again = await client.send(create(actor, new_id(), "Later"))  # its copy follows any copy of the hostile result
    assert again.status == "accepted"
    assert foreign.records == [], "the service never wrote to the foreign topic"


async def test_a_query_with_a_foreign_reply_to_is_dead_lettered_and_nothing_reaches_that_topic(
    client: TicketClient, output: TopicReader, producer: AIOKafkaProducer, foreign: TopicReader,
) -> None:
    actor, ticket_id = customer(), new_id()
    key = str(ticket_id).encode()
    assert (await client.send(create(actor, ticket_id, "Private title"))).status == "accepted"
    hostile = GetTicket(actor=actor, payload={"ticket_id": ticket_id}).model_dump_json().encode()

    await producer.send_and_wait(topics.QUERIES, hostile, key=key, headers=[(topics.HEADER_REPLY_TO, FOREIGN.encode())])
    answer = await client.request(GetTicket(actor=actor, payload={"ticket_id": ticket_id}))

    assert isinstance(answer, TicketAnswer), "the next query on the same partition is answered"
    headers = await dead_letter(output, topics.QUERIES, key, hostile)
    assert headers[topics.DLQ_HEADER_ERROR_CLASS] == "InvalidReplyTo"
    assert foreign.records == [], "the service never wrote to the foreign topic"
