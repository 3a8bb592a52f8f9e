"""``user.erased`` end to end: the identity service's event in, ``ticket.redact`` commands out onto the
commands topic (keyed by ticket id), progress on the ops topic, and afterwards nothing of the person
in any answer or any table; a second ``user.erased`` is a no-op."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine
from ticket_contracts import (
    Actor,
    AddReply,
    CreateTicket,
    SearchAnswer,
    SearchTickets,
    TicketAnswer,
    GetTicket,
    ThreadAnswer,
    TicketThread,
    new_id,
    topics,
)
from ticket_contracts.client import TicketClient
from ticket_contracts.users import UserErased, UserPayload

from service.runtime import Runtime
from tests.e2e.conftest import Directory
from tests.integration.test_redaction import grep, marker
from tests.support.streams import TopicReader
from tests.support.waiting import eventually


def progress_of(output: TopicReader, user_id: uuid.UUID) -> list[dict[str, Any]]:
    found = []
    for record in output.records:
        if record.topic == topics.OPS and record.key == str(user_id).encode():
            found.append(json.loads(record.value))
    return found


def redactions_for(output: TopicReader, ticket_ids: set[uuid.UUID]) -> list[Any]:
    """ticket.redacted events of these tickets on tickets.events.v1."""
    out = []
    for tid in ticket_ids:
        out += [r for r in output.by_key.get(str(tid).encode(), [])
                if r.topic == topics.EVENTS and json.loads(r.value)["type"] == "ticket.redacted"]
    return out


async def test_user_erased_redacts_their_tickets_and_words_everywhere(
    client: TicketClient, directory: Directory, output: TopicReader, service: Runtime, database_url: str
) -> None:
    customer_id = uuid.uuid4()
    address = f"{marker('addr')}@example.test"
    alice = await directory.add("customer", customer_id=customer_id, email=address)
    carol = await directory.add("customer", customer_id=customer_id)
    agent = await directory.add("agent")
    me = Actor(user_id=alice.user_id, role="customer", customer_id=customer_id)
    her = Actor(user_id=carol.user_id, role="customer", customer_id=customer_id)
    staff = Actor(user_id=agent.user_id, role="agent")
    words, control = marker("w"), marker("control")
    own, colleagues = new_id(), new_id()
    for command in (
        CreateTicket(actor=me, payload={"ticket_id": own, "title": f"Lost {words}", "description": f"Help {words}"}),
        AddReply(actor=staff, payload={"ticket_id": own, "reply_id": new_id(), "body": f"re {words}", "internal": True}),
        CreateTicket(actor=her, payload={"ticket_id": colleagues, "title": f"Carol {control}", "description": "Hi"}),
        AddReply(actor=me, payload={"ticket_id": colleagues, "reply_id": new_id(), "body": f"me too {words}"}),
    ):
        assert (await client.send(command)).accepted
    engine = create_async_engine(database_url)
    try:
        erased = UserErased(occurred_at=datetime.now(UTC), payload=UserPayload(user_id=alice.user_id))
        await client.publish(erased, topics.USER_EVENTS, key=alice.user_id, reply=False)

        done = await eventually(lambda: [p for p in progress_of(output, alice.user_id) if p["done"]],
                                what="erasure progress: done")
        assert done[-1]["type"] == "ops.erasure_progress" and done[-1]["commands_sent"] == 2
        assert (done[-1]["tickets_to_redact"], done[-1]["tickets_with_authored_content"]) == (1, 1)
        redacted = await eventually(lambda: len(redactions_for(output, {own, colleagues})) == 2 or None,
                                    what="ticket.redacted events")
        assert redacted
        commands = [r for r in output.records if r.topic == topics.COMMAND_RESULTS
                    and json.loads(r.value)["command_type"] == "ticket.redact"
                    and json.loads(r.value)["correlation_id"] == str(erased.message_id)]
        assert {r.key for r in commands} == {str(own).encode(), str(colleagues).encode()}  # keyed by ticket
        assert all(json.loads(r.value)["status"] == "accepted" for r in commands)

        assert await grep(engine, words, address) == {}
        assert "tickets" in (await grep(engine, control))[control]
        for answer in (await client.request(GetTicket(actor=her, payload={"ticket_id": colleagues})),
                       await client.request(TicketThread(actor=staff, payload={"ticket_id": own})),
                       await client.request(SearchTickets(actor=staff, payload={"text": words}))):
            assert isinstance(answer, TicketAnswer | ThreadAnswer | SearchAnswer)
            assert words not in answer.model_dump_json() and address not in answer.model_dump_json()

        # a second user.erased: a no-op — it reports the erasure done and sends nothing
        again = UserErased(occurred_at=datetime.now(UTC), payload=UserPayload(user_id=alice.user_id))
        await client.publish(again, topics.USER_EVENTS, key=alice.user_id, reply=False)
        both = await eventually(lambda: [p for p in progress_of(output, alice.user_id) if p["done"]][1:] or None,
                                what="second erasure progress")
        assert both[-1]["commands_sent"] == 2
        assert len([p for p in progress_of(output, alice.user_id) if not p["done"]]) == 1  # only the first planned
    finally:
        await engine.dispose()

