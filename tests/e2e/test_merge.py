"""``ticket.merge`` over Kafka: both tickets' events, the views, and the closed source afterwards."""

from __future__ import annotations

import json
import uuid

from ticket_contracts import Actor, AddReply, CreateTicket, GetTicket, MergeTicket, new_id, parse_event, topics
from ticket_contracts.client import TicketClient

from tests.support.streams import TopicReader


async def test_a_merge_closes_the_source_into_the_target(client: TicketClient, output: TopicReader) -> None:
    owner = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    agent = Actor(user_id=uuid.uuid4(), role="agent")
    source, target = new_id(), new_id()
    for ticket_id in (source, target):
        created = await client.send(CreateTicket(actor=owner, payload={
            "ticket_id": ticket_id, "title": "Printer", "description": "On fire"}))
        assert created.accepted

    result = await client.send(MergeTicket(actor=agent, payload={
        "ticket_id": source, "into_ticket_id": target, "reason": "the same printer"}))

    assert (result.status, result.ticket_id, result.ticket_version) == ("accepted", source, 3)
    on_source = [parse_event(json.dumps(e)) for e in await output.wait_for(source, 3, topic=topics.EVENTS)]
    on_target = [parse_event(json.dumps(e)) for e in await output.wait_for(target, 2, topic=topics.EVENTS)]
    assert [(e.type, e.ticket_version) for e in on_source] == [
        ("ticket.created", 1), ("ticket.merged", 2), ("ticket.status_changed", 3)]
    assert [(e.type, e.ticket_version) for e in on_target] == [("ticket.created", 1), ("ticket.merge_received", 2)]
    assert on_source[1].payload.into_ticket_id == target  # type: ignore[attr-defined]
    assert on_target[1].payload.from_ticket_id == source  # type: ignore[attr-defined]
    assert result.event_ids == [on_source[1].event_id, on_source[2].event_id, on_target[1].event_id]

    merged = await client.request(GetTicket(actor=owner, payload={"ticket_id": source}))
    absorbing = await client.request(GetTicket(actor=owner, payload={"ticket_id": target}))
    assert (merged.ticket.status, merged.ticket.merged_into) == ("closed", target)  # type: ignore[attr-defined]
    assert absorbing.ticket.merged_from == [source]  # type: ignore[attr-defined]

    late = await client.send(AddReply(actor=owner, payload={"ticket_id": source, "reply_id": uuid.uuid4(),
                                                            "body": "Any news?"}))
    assert (late.status, late.reason) == ("rejected", "ticket_closed")
    assert str(target) in (late.message or "")
