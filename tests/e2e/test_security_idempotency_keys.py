"""Idempotency keys are scoped to the sender and bound to the payload, on the real broker and
database; each attack is followed by a valid command on the same partition, which is processed."""

from __future__ import annotations

import uuid

from ticket_contracts import Actor, CreateTicket, LogTime, new_id, topics
from ticket_contracts.client import TicketClient

from tests.support.streams import TopicReader


def agent() -> Actor:
    return Actor(user_id=uuid.uuid4(), role="agent")


async def test_another_actors_reuse_of_a_message_id_gets_a_conflict_revealing_nothing(
    client: TicketClient, output: TopicReader,
) -> None:
    owner = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    ticket_id = new_id()
    first = CreateTicket(actor=owner, payload={"ticket_id": ticket_id, "title": "Secret title", "description": "D"})
    created = await client.send(first)
    assert created.accepted

    stolen = LogTime(message_id=first.message_id, actor=agent(),
                     payload={"ticket_id": ticket_id, "entry_id": uuid.uuid4(), "minutes": 5})
    answer = await client.send(stolen)

    assert (answer.status, answer.reason) == ("rejected", "conflict")
    assert answer.message_id != created.message_id and answer.event_ids == [] and answer.ticket_version is None
    assert answer.actor is not None and answer.actor.user_id == stolen.actor.user_id
    assert "Secret" not in answer.model_dump_json()

    again = await client.send(first)  # the real sender's retry: still its own stored result
    assert again == created
    follow_up = await client.send(LogTime(actor=agent(), payload={"ticket_id": ticket_id, "entry_id": uuid.uuid4(),
                                                                  "minutes": 7}))
    assert follow_up.accepted and follow_up.ticket_version == 2  # the reuse changed nothing; the partition moves on
    results = await output.wait_for(ticket_id, 4, topic=topics.COMMAND_RESULTS)
    assert sum(r["reason"] == "conflict" for r in results) == 1


async def test_the_same_message_id_with_another_payload_gets_a_conflict(client: TicketClient) -> None:
    owner = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    ticket_id = new_id()
    first = CreateTicket(actor=owner, payload={"ticket_id": ticket_id, "title": "T", "description": "D"})
    assert (await client.send(first)).accepted

    changed = first.model_copy(update={"payload": first.payload.model_copy(update={"title": "Other"})})
    answer = await client.send(changed)

    assert (answer.status, answer.reason) == ("rejected", "conflict")
    nxt = await client.send(LogTime(actor=agent(), payload={"ticket_id": ticket_id, "entry_id": uuid.uuid4(),
                                                            "minutes": 3}))
    assert nxt.accepted and nxt.ticket_version == 2
