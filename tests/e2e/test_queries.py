"""Queries end to end: request/reply through Kafka, error answers, and what goes to the DLQ."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from ticket_contracts import (
    Actor,
    AddReply,
    CreateTicket,
    ErrorAnswer,
    GetTicket,
    ListTickets,
    MyTickets,
    TicketAnswer,
    TicketHistory,
    TicketPageAnswer,
    TicketThread,
    new_id,
    topics,
)
from ticket_contracts.client import TicketClient

from service.runtime import Runtime
from tests.e2e.conftest import Directory
from tests.support.streams import TopicReader
from tests.support.waiting import eventually

QUERIES_DLQ = topics.dlq(topics.QUERIES)


def customer() -> Actor:
    return Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())


async def create_ticket(client: TicketClient, actor: Actor, title: str = "Printer on fire") -> uuid.UUID:
    ticket_id = new_id()
    result = await client.send(CreateTicket(actor=actor, payload={"ticket_id": ticket_id, "title": title,
                                                                  "description": "Smoke"}))
    assert result.accepted, result
    return ticket_id


def replied_to(reader: TopicReader, request_id: uuid.UUID | str) -> list[Any]:
    """Records on a reply topic answering ``request_id`` (skipping anything else sent there)."""
    found = []
    for record in reader.records:
        try:
            if json.loads(record.value)["causation_id"] == str(request_id):
                found.append(record)
        except (ValueError, KeyError, TypeError):
            continue
    return found


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=4 * 1024 * 1024)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def replies(kafka_bootstrap: str, client: TicketClient) -> AsyncIterator[TopicReader]:
    """Everything on the client's own reply topic, with keys and headers."""
    reader = TopicReader(kafka_bootstrap, client.reply_topic)
    await reader.start()
    yield reader
    await reader.stop()


async def test_get_answers_on_reply_to_in_the_queries_conversation(
    client: TicketClient, replies: TopicReader, service: Runtime
) -> None:
    me = customer()
    ticket_id = await create_ticket(client, me)
    ok_before = service.metrics.total(service.metrics.queries, "ok")
    request = GetTicket(actor=me, correlation_id=uuid.uuid4(), payload={"ticket_id": ticket_id})

    answer = await client.request(request)

    assert isinstance(answer, TicketAnswer)
    assert answer.ticket.id == ticket_id and answer.ticket.time_spent_minutes is None
    assert answer.causation_id == request.message_id and answer.correlation_id == request.correlation_id
    assert answer.query_type == "ticket.get"
    [record] = await eventually(lambda: replied_to(replies, request.message_id))
    assert record.key == str(ticket_id).encode()  # keyed like the request
    assert dict(record.headers)[topics.HEADER_CORRELATION_ID] == str(request.correlation_id).encode()
    assert service.metrics.total(service.metrics.queries, "ok") == ok_before + 1


async def test_a_query_without_correlation_id_is_its_own_conversation(client: TicketClient) -> None:
    me = customer()
    request = MyTickets(actor=me)

    answer = await client.request(request)

    assert isinstance(answer, TicketPageAnswer) and answer.items == [] and answer.total == 0
    assert answer.correlation_id == request.message_id == answer.causation_id


async def test_errors_come_back_as_error_answers(client: TicketClient, service: Runtime) -> None:
    me, stranger = customer(), customer()
    ticket_id = await create_ticket(client, me)
    errors_before = service.metrics.total(service.metrics.queries, "error")

    foreign = await client.request(GetTicket(actor=stranger, payload={"ticket_id": ticket_id}))
    history = await client.request(TicketHistory(actor=me, payload={"ticket_id": ticket_id}))
    deleted = await client.request(GetTicket(actor=me, payload={"ticket_id": ticket_id, "include_deleted": True}))

    assert isinstance(foreign, ErrorAnswer) and foreign.reason == "not_found"
    assert isinstance(history, ErrorAnswer) and history.reason == "forbidden"
    assert isinstance(deleted, ErrorAnswer) and deleted.reason == "forbidden"
    assert str(ticket_id) not in foreign.message
    assert service.metrics.total(service.metrics.queries, "error") == errors_before + 3


async def test_an_invalid_query_gets_a_validation_error_naming_the_fields(
    client: TicketClient, producer: AIOKafkaProducer, replies: TopicReader
) -> None:
    query = ListTickets(actor=customer()).model_dump(mode="json")
    query["payload"] = {"limit": 1000, "status": ["bogus"]}  # the contract models cannot even build this

    await producer.send_and_wait(topics.QUERIES, json.dumps(query).encode(), key=b"k",
                                 headers=[(topics.HEADER_REPLY_TO, client.reply_topic.encode())])

    [record] = await eventually(lambda: replied_to(replies, query["message_id"]))
    answer = json.loads(record.value)
    assert answer["type"] == "ticket.query.error" and answer["reason"] == "validation_error"
    assert "payload.limit" in answer["message"] and "payload.status" in answer["message"]
    assert "1000" not in answer["message"] and "bogus" not in answer["message"]  # paths, never values


async def test_list_my_and_thread_round_trip(client: TicketClient, directory: Directory) -> None:
    me = customer()
    agent = await directory.add("agent")
    staff = Actor(user_id=agent.user_id, role="agent")
    ids = [await create_ticket(client, me, title=f"Ticket {n}") for n in range(3)]
    result = await client.send(AddReply(actor=staff, payload={"ticket_id": ids[0], "reply_id": new_id(),
                                                              "body": "internal", "internal": True}))
    assert result.accepted

    mine = await client.request(MyTickets(actor=me, payload={"limit": 2}))
    rest = await client.request(MyTickets(actor=me, payload={"limit": 2, "cursor": mine.next_cursor}))  # type: ignore[attr-defined]
    listed = await client.request(ListTickets(actor=staff, payload={"customer_id": me.customer_id}))
    thread = await client.request(TicketThread(actor=me, payload={"ticket_id": ids[0]}))
    staff_thread = await client.request(TicketThread(actor=staff, payload={"ticket_id": ids[0]}))

    assert isinstance(mine, TicketPageAnswer) and isinstance(rest, TicketPageAnswer)
    assert [t.id for t in mine.items + rest.items] == ids[::-1] and mine.total == rest.total == 3
    assert rest.next_cursor is None
    assert isinstance(listed, TicketPageAnswer) and {t.id for t in listed.items} == set(ids)
    assert all(t.time_spent_minutes == 0 for t in listed.items)
    assert thread.replies == [] and [r.body for r in staff_thread.replies] == ["internal"]  # type: ignore[attr-defined]


def dead_letter(output: TopicReader, key: bytes) -> Any:
    found = [r for r in output.by_key.get(key, []) if r.topic == QUERIES_DLQ]
    return found[0] if found else None


@pytest.mark.parametrize(("case", "error_class"), [
    ("no reply_to", "MissingReplyTo"),
    ("reply_to the events topic", "InvalidReplyTo"),
    ("reply_to not a topic name", "InvalidReplyTo"),
    ("not JSON", "UndecodableMessage"),
    ("unknown type", "UnknownMessageType"),
    ("over the size limit", "MessageTooLarge"),
])
async def test_unanswerable_requests_go_to_the_dlq_with_the_reason(
    producer: AIOKafkaProducer, output: TopicReader, client: TicketClient, service: Runtime, case: str,
    error_class: str
) -> None:
    query = MyTickets(actor=customer()).model_dump(mode="json")
    headers = [(topics.HEADER_REPLY_TO, client.reply_topic.encode())]
    value = json.dumps(query).encode()
    if case == "no reply_to":
        headers = []
    elif case == "reply_to the events topic":
        headers = [(topics.HEADER_REPLY_TO, topics.EVENTS.encode())]
    elif case == "reply_to not a topic name":
        headers = [(topics.HEADER_REPLY_TO, b"no such/topic!")]
    elif case == "not JSON":
        value = b"\x00\x01 not json"
    elif case == "unknown type":
        value = json.dumps({**query, "type": "ticket.everything"}).encode()
    elif case == "over the size limit":
        value = json.dumps({**query, "pad": "x" * service.settings.max_message_bytes}).encode()
    key = uuid.uuid4().hex.encode()

    sent = await producer.send_and_wait(topics.QUERIES, value, key=key, headers=headers)

    record = await eventually(lambda: dead_letter(output, key), what=f"dead letter for {case}")
    got = {k: v.decode() for k, v in record.headers}
    assert got[topics.DLQ_HEADER_ERROR_CLASS] == error_class
    assert got[topics.DLQ_HEADER_SOURCE_TOPIC] == topics.QUERIES
    assert (int(got[topics.DLQ_HEADER_SOURCE_PARTITION]), int(got[topics.DLQ_HEADER_SOURCE_OFFSET])) == (
        sent.partition, sent.offset)
    assert record.value == value


async def test_the_consumer_goes_on_after_a_dead_letter(
    producer: AIOKafkaProducer, client: TicketClient, output: TopicReader
) -> None:
    me = customer()
    key = str(me.user_id).encode()
    await producer.send_and_wait(topics.QUERIES, json.dumps(MyTickets(actor=me).model_dump(mode="json")).encode(),
                                 key=key)  # no reply_to, same key, so the same partition

    answer = await client.request(MyTickets(actor=me))

    assert isinstance(answer, TicketPageAnswer)
    assert await eventually(lambda: dead_letter(output, key))


async def test_a_query_that_crashes_is_dead_lettered_and_the_next_is_answered(
    client: TicketClient, output: TopicReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.entrypoints import queries as entrypoint

    real = entrypoint.answer
    doomed = MyTickets(actor=customer())

    async def buggy(query: Any, actor: Any, reads: Any) -> Any:
        if query.message_id == doomed.message_id:
            raise RuntimeError("a bug")
        return await real(query, actor, reads)

    monkeypatch.setattr(entrypoint, "answer", buggy)
    await client.publish(doomed, topics.QUERIES, key=doomed.actor.user_id)

    after = await client.request(MyTickets(actor=customer()))

    assert isinstance(after, TicketPageAnswer)
    record = await eventually(lambda: dead_letter(output, str(doomed.actor.user_id).encode()))
    assert dict(record.headers)[topics.DLQ_HEADER_ERROR_CLASS] == b"RuntimeError"


async def test_an_answer_the_broker_refuses_dead_letters_its_query(
    client: TicketClient, producer: AIOKafkaProducer, output: TopicReader, service: Runtime,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when reply_to names a missing topic on a cluster that does not create topics."""
    publish = service.broker.publish
    unreachable = f"tickets.replies.gone-{uuid.uuid4().hex[:8]}"

    async def refusing(message: Any, topic: str = "", **kwargs: Any) -> Any:
        if topic == unreachable:
            raise KafkaTimeoutError("no such topic")
        return await publish(message, topic, **kwargs)

    monkeypatch.setattr(service.broker, "publish", refusing)
    lost = MyTickets(actor=customer())
    key = str(lost.actor.user_id).encode()
    await producer.send_and_wait(topics.QUERIES, lost.model_dump_json().encode(), key=key,
                                 headers=[(topics.HEADER_REPLY_TO, unreachable.encode())])

    record = await eventually(lambda: dead_letter(output, key))

    assert dict(record.headers)[topics.DLQ_HEADER_ERROR_CLASS] == b"AnswerUndeliverable"
    assert isinstance(await client.request(MyTickets(actor=customer())), TicketPageAnswer)
