"""``ticket.search`` end to end: commands in, the search over Kafka, the visibility matrix on the wire."""

from __future__ import annotations

import json
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from ticket_contracts import Actor, AddReply, CreateTicket, DeleteTicket, ErrorAnswer, SearchAnswer, SearchTickets, new_id
from ticket_contracts import topics
from ticket_contracts.client import TicketClient

from tests.e2e.conftest import Directory
from tests.e2e.test_queries import customer, producer, replied_to, replies  # noqa: F401  (fixtures)
from tests.support.streams import TopicReader
from tests.support.waiting import eventually


def word() -> str:
    return "k" + uuid.uuid4().hex[:12]


async def send(client: TicketClient, command: object) -> None:
    result = await client.send(command)  # type: ignore[arg-type]
    assert result.accepted, result


async def test_search_over_kafka_shows_each_role_what_it_may_see(client: TicketClient, directory: Directory) -> None:
    alice, bob = customer(), customer()
    agent = Actor(user_id=(await directory.add("agent")).user_id, role="agent")
    admin = Actor(user_id=(await directory.add("admin")).user_id, role="admin")
    public, secret = word(), word()
    tickets = {name: new_id() for name in ("own", "foreign", "deleted")}
    for name, owner in (("own", alice), ("foreign", bob), ("deleted", alice)):
        await send(client, CreateTicket(actor=owner, payload={
            "ticket_id": tickets[name], "title": f"Printer {public}", "description": "It smokes"}))
        await send(client, AddReply(actor=agent, payload={"ticket_id": tickets[name], "reply_id": new_id(),
                                                          "body": f"note {secret}", "internal": True}))
    await send(client, DeleteTicket(actor=admin, payload={"ticket_id": tickets["deleted"], "reason": "spam"}))

    async def found(actor: Actor, text: str, **payload: object) -> set[uuid.UUID] | str:
        answer = await client.request(SearchTickets(actor=actor, payload={"text": text, **payload}))
        if isinstance(answer, ErrorAnswer):
            return answer.reason
        assert isinstance(answer, SearchAnswer) and answer.total == len(answer.items)
        if actor.role == "customer":
            assert secret not in answer.model_dump_json()
        return {item.id for item in answer.items}

    assert await found(alice, public) == {tickets["own"]}
    assert await found(alice, secret) == set()
    assert await found(alice, f"{public} -{secret}") == {tickets["own"]}
    assert await found(alice, public, include_deleted=True) == "forbidden"
    assert await found(bob, public) == {tickets["foreign"]}
    assert await found(agent, public) == {tickets["own"], tickets["foreign"]}
    assert await found(agent, secret) == {tickets["own"], tickets["foreign"]}
    assert await found(agent, f"{public} -{secret}") == set()
    assert await found(admin, secret, include_deleted=True) == set(tickets.values())
    assert await found(Actor(user_id=uuid.uuid4(), role="system"), public) == "forbidden"


async def test_search_pages_and_snippets_over_kafka(client: TicketClient) -> None:
    me, needle = customer(), word()
    ids = [new_id() for _ in range(5)]
    for tid in ids:
        await send(client, CreateTicket(actor=me, payload={"ticket_id": tid, "title": f"Scanner {needle}",
                                                           "description": "Paper jam"}))

    first = await client.request(SearchTickets(actor=me, payload={"text": needle, "page_size": 3}))
    assert isinstance(first, SearchAnswer) and first.next_cursor and first.total == 5
    rest = await client.request(SearchTickets(actor=me, payload={"text": needle, "page_size": 3,
                                                                 "cursor": first.next_cursor}))

    assert isinstance(rest, SearchAnswer) and rest.next_cursor is None
    assert [i.id for i in first.items + rest.items] == ids[::-1]
    assert all(f"<mark>{needle}</mark>" in i.snippet and i.rank > 0 for i in first.items + rest.items)


@pytest.mark.parametrize("payload", [{"text": ""}, {"text": "x" * 201}, {"text": "printer", "page_size": 51}])
async def test_an_invalid_search_is_a_validation_error(
    client: TicketClient, producer: AIOKafkaProducer, replies: TopicReader, payload: dict[str, object]  # noqa: F811  (fixtures)
) -> None:
    query = SearchTickets(actor=customer(), payload={"text": "printer"}).model_dump(mode="json")
    query["payload"] = payload

    await producer.send_and_wait(topics.QUERIES, json.dumps(query).encode(), key=b"k",
                                 headers=[(topics.HEADER_REPLY_TO, client.reply_topic.encode())])

    [record] = await eventually(lambda: replied_to(replies, query["message_id"]))
    answer = json.loads(record.value)
    assert answer["type"] == "ticket.query.error" and answer["reason"] == "validation_error"
    assert answer["query_type"] == "ticket.search"

