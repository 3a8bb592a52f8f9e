"""Secrets never reach a log: commands and queries carrying recognisable markers in titles, bodies,
e-mail addresses and tokens are driven down every error path — accepted, rejected, invalid,
dead-lettered, crashed in a command handler and in a query handler — and neither the console nor the
JSON rendering of the service's logs contains any marker, nor the JWT secret of its settings."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from ticket_contracts import Actor, AddReply, CreateTicket, new_id, topics
from ticket_contracts.client import TicketClient
from ticket_contracts.commands import IngestEmail
from ticket_contracts.queries import ListTickets
from ticket_contracts.users import UserUpserted, UserUpsertedPayload

from service.domain.ticket import Ticket
from service.entrypoints import queries as query_entrypoint
from tests.security.boundary.conftest import JWT_SECRET_MARKER, CapturedLogs
from tests.support.streams import TopicReader
from tests.support.waiting import eventually

RUN = uuid.uuid4().hex[:12]
TITLE = f"title-marker-{RUN}"
DESCRIPTION = f"description-marker-{RUN}"
BODY = f"body-marker-{RUN}"
EMAIL = f"email-marker-{RUN}@example.test"
TOKEN = f"token-marker-{RUN}"
CRASH = f"crash-marker-{RUN}"
MARKERS = (TITLE, DESCRIPTION, BODY, EMAIL, TOKEN, CRASH, JWT_SECRET_MARKER)


@pytest.fixture
async def producer(attack_broker: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=attack_broker, linger_ms=0)
    await producer.start()
    yield producer
    await producer.stop()


def _crash_on_marker(original: Any) -> Any:
    def add_reply(self: Ticket, *args: Any, body: str, **kwargs: Any) -> Any:
        if CRASH in body:
            int(body)  # a bug: ValueError("invalid literal for int() with base 10: '<the body>'")
        return original(self, *args, body=body, **kwargs)
    return add_reply


def _crashing_answer(original: Any) -> Any:
    async def answer(query: Any, actor: Any, reads: Any) -> Any:
        text = getattr(query.payload, "text", None) or ""
        if CRASH in text:
            int(text)
        return await original(query, actor, reads)
    return answer


async def test_no_marker_and_no_secret_reaches_the_console_or_json_log(
    logs: CapturedLogs, client: TicketClient, output: TopicReader, producer: AIOKafkaProducer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Ticket, "add_reply", _crash_on_marker(Ticket.add_reply))
    monkeypatch.setattr(query_entrypoint, "answer", _crashing_answer(query_entrypoint.answer))
    owner = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    stranger = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    ticket_id = new_id()
    key = str(ticket_id).encode()

    user = UserUpsertedPayload(user_id=uuid.uuid4(), email=EMAIL, role="agent", display_name=TITLE)
    await client.publish(UserUpserted(occurred_at=datetime.now(UTC), payload=user), topics.USER_EVENTS,
                         key=user.user_id, reply=False)
    outcomes = [
        await client.send(CreateTicket(actor=owner, actor_token=TOKEN,
                                       payload={"ticket_id": ticket_id, "title": TITLE, "description": DESCRIPTION})),
        await client.send(AddReply(actor=owner, actor_token=TOKEN,
                                   payload={"ticket_id": ticket_id, "reply_id": new_id(), "body": BODY})),
        await client.send(AddReply(actor=stranger, payload={"ticket_id": ticket_id, "reply_id": new_id(), "body": BODY})),
        await client.send(IngestEmail(actor=Actor(user_id=uuid.uuid4(), role="system"), actor_token=TOKEN, payload={
            "email_message_id": f"<{RUN}@mail>", "from_address": EMAIL, "subject": TITLE, "body": BODY,
            "received_at": datetime.now(UTC)})),
    ]
    invalid = json.loads(CreateTicket(actor=owner, payload={"ticket_id": new_id(), "title": "x",
                                                            "description": DESCRIPTION}).model_dump_json())
    invalid["payload"]["title"] = TITLE * 20  # too long: validation_error
    invalid["actor_token"] = TOKEN
    crash = AddReply(actor=owner, actor_token=TOKEN,
                     payload={"ticket_id": ticket_id, "reply_id": new_id(), "body": f"{CRASH} {BODY}"})
    poison = [
        f"{{not json {TITLE} {EMAIL} {TOKEN}".encode(),
        json.dumps({"type": "ticket.explode", "message_id": str(uuid.uuid4()), "title": TITLE, "email": EMAIL}).encode(),
        json.dumps({"type": "ticket.create", "title": TITLE, "actor_token": TOKEN}).encode(),  # no message_id
        json.dumps({"type": "ticket.create", "message_id": str(uuid.uuid4()), "title": TITLE}).encode()[:-1]
        + b', "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        crash.model_dump_json().encode(),
    ]
    headers = [(topics.HEADER_REPLY_TO, client.reply_topic.encode())]
    await producer.send_and_wait(topics.COMMANDS, json.dumps(invalid).encode(), key=key, headers=headers)
    for value in poison:
        await producer.send_and_wait(topics.COMMANDS, value, key=key, headers=headers)
    await producer.send_and_wait(topics.QUERIES, f"[{TITLE}".encode(), key=key, headers=headers)
    crashing_query = ListTickets(actor=owner, actor_token=TOKEN, payload={"text": CRASH})
    await producer.send_and_wait(topics.QUERIES, crashing_query.model_dump_json().encode(), key=key, headers=headers)
    outcomes.append(await client.send(CreateTicket(actor=owner, payload={
        "ticket_id": new_id(), "title": "after", "description": "the poison"})))
    answered = await client.request(ListTickets(actor=owner, actor_token=TOKEN, payload={"text": TITLE}))

    assert [o.status for o in outcomes[:3]] == ["accepted", "accepted", "rejected"] and outcomes[-1].status == "accepted"
    assert answered.type == "ticket.page.answer"
    await eventually(lambda: len([r for r in output.by_key.get(key, []) if r.topic == topics.dlq(topics.COMMANDS)])
                     >= len(poison), what="every poison command dead-lettered")
    await eventually(lambda: len([r for r in output.by_key.get(key, []) if r.topic == topics.dlq(topics.QUERIES)]) >= 2,
                     what="both poison queries dead-lettered")
    await eventually(lambda: [r for r in output.records if r.topic == topics.COMMAND_RESULTS
                              and json.loads(r.value)["command_id"] == invalid["message_id"]],
                     what="the validation_error result")

    text = logs.text()
    assert "dead-lettered" in text and "query crashed" in text, "the error paths were logged"
    for marker in MARKERS:
        assert marker not in text, f"{marker} reached a log"
    assert "Traceback" in text and "ValueError (message withheld)" in text, "with a traceback"
    assert '"event": "query crashed"' in logs.json.getvalue(), "in both renderers"
