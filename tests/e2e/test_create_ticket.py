"""The first path end to end: ticket.create → one transaction → event and result on Kafka."""

from __future__ import annotations

import uuid

from ticket_contracts import Actor, CreateTicket, new_id, parse_event, topics
from ticket_contracts.client import TicketClient

from tests.support.streams import TopicReader


def customer() -> Actor:
    return Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())


async def test_create_yields_event_and_accepted_result(client: TicketClient, output: TopicReader) -> None:
    ticket_id = new_id()
    command = CreateTicket(actor=customer(), payload={"ticket_id": ticket_id, "title": "Printer", "description": "On fire"})

    result = await client.send(command)

    assert result.status == "accepted" and result.ticket_id == ticket_id and result.ticket_version == 1
    [event] = await output.wait_for(ticket_id, 1, topic=topics.EVENTS)
    created = parse_event(__import__("json").dumps(event))
    assert created.type == "ticket.created" and created.event_id == result.event_ids[0]
    assert created.ticket.number.startswith("TKT-") and created.ticket.status == "new"
    assert created.causation_id == command.message_id


async def test_same_message_id_twice_changes_nothing_and_resends_result(
    client: TicketClient, output: TopicReader
) -> None:
    ticket_id = new_id()
    command = CreateTicket(actor=customer(), payload={"ticket_id": ticket_id, "title": "T", "description": "D"})

    first = await client.send(command)
    second = await client.send(command)

    assert second == first
    results = await output.wait_for(ticket_id, 2, topic=topics.COMMAND_RESULTS)
    assert {r["message_id"] for r in results} == {str(first.message_id)}
    events = output.json_for(ticket_id, topics.EVENTS)
    assert len(events) == 1
