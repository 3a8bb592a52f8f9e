"""Raw query records → a query to answer, an error to answer with, or a dead letter (no I/O)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from ticket_contracts import topics
from ticket_contracts.queries import GetTicket, MyTickets

from service.adapters.auth import ActorResolver, issue_token
from service.domain.values import Actor, Role
from service.entrypoints.decoding import DeadLetter
from service.entrypoints.query_decoding import QUERY_TYPES, IncomingQuery, decode_query

TRUST = ActorResolver("trust")
SECRET = "s" * 32


@dataclass
class Record:
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=lambda: [(topics.HEADER_REPLY_TO, b"tickets.replies.me")])
    topic: str = topics.QUERIES
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"k"


def a_query(**changes: Any) -> dict[str, Any]:
    actor = {"user_id": str(uuid.uuid4()), "role": "customer", "customer_id": str(uuid.uuid4())}
    return GetTicket(actor=actor, payload={"ticket_id": uuid.uuid4()}).model_dump(mode="json") | changes


def decode(value: bytes | None, resolver: ActorResolver = TRUST, **record: Any) -> IncomingQuery | DeadLetter:
    return decode_query(Record(value, **record), resolver, 10_000)


def test_every_query_type_of_the_contract_is_known() -> None:
    assert QUERY_TYPES == {"ticket.get", "ticket.list", "ticket.my", "ticket.search", "ticket.thread", "ticket.history",
                           "ticket.time_entries"}


def test_a_valid_query_is_answered_in_its_conversation() -> None:
    correlation = uuid.uuid4()
    query = a_query(correlation_id=str(correlation))

    decoded = decode(json.dumps(query).encode())

    assert isinstance(decoded, IncomingQuery) and decoded.refusal is None
    assert decoded.reply_to == "tickets.replies.me" and decoded.query_type == "ticket.get"
    assert decoded.correlation_id == correlation and str(decoded.message_id) == query["message_id"]
    assert decoded.actor is not None and decoded.actor.role is Role.CUSTOMER


def test_without_correlation_id_the_query_starts_its_own_conversation() -> None:
    query = a_query()

    decoded = decode(json.dumps(query).encode())

    assert isinstance(decoded, IncomingQuery) and str(decoded.correlation_id) == query["message_id"]


def test_an_invalid_query_is_answered_with_a_summary_of_its_fields() -> None:
    query = MyTickets(actor=a_query()["actor"]).model_dump(mode="json")
    query["payload"] = {"limit": 500, "colour": "blue"}

    decoded = decode(json.dumps(query).encode())

    assert isinstance(decoded, IncomingQuery) and decoded.refusal is not None
    reason, message = decoded.refusal
    assert reason == "validation_error" and "payload.limit" in message and "payload.colour" in message
    assert "500" not in message and "blue" not in message


def test_a_refused_actor_is_answered_forbidden() -> None:
    jwt = ActorResolver("jwt", SECRET)
    query = a_query(actor_token="not a token")

    decoded = decode(json.dumps(query).encode(), jwt)

    assert isinstance(decoded, IncomingQuery) and decoded.refusal is not None and decoded.refusal[0] == "forbidden"
    good = issue_token(SECRET, Actor(uuid.uuid4(), Role.AGENT))
    accepted = decode(json.dumps(a_query(actor_token=good)).encode(), jwt)
    assert isinstance(accepted, IncomingQuery) and accepted.refusal is None and accepted.actor.role is Role.AGENT  # type: ignore[union-attr]


@pytest.mark.parametrize(("value", "headers", "error_class"), [
    (None, None, "EmptyMessage"),
    (b"x" * 10_001, None, "MessageTooLarge"),
    (b"\xff not json", None, "UndecodableMessage"),
    (b"[1, 2]", None, "UndecodableMessage"),
    (json.dumps(a_query(type="ticket.everything")).encode(), None, "UnknownMessageType"),
    (json.dumps(a_query(message_id="nope", payload={})).encode(), None, "InvalidEnvelope"),
    (json.dumps(a_query()).encode(), [], "MissingReplyTo"),
    (json.dumps(a_query(payload={})).encode(), [], "MissingReplyTo"),  # invalid too, but unanswerable
    (json.dumps(a_query()).encode(), [(topics.HEADER_REPLY_TO, b"")], "MissingReplyTo"),
    (json.dumps(a_query()).encode(), [(topics.HEADER_REPLY_TO, b"a/b")], "InvalidReplyTo"),
    (json.dumps(a_query()).encode(), [(topics.HEADER_REPLY_TO, b"..")], "InvalidReplyTo"),
    (json.dumps(a_query()).encode(), [(topics.HEADER_REPLY_TO, topics.EVENTS.encode())], "InvalidReplyTo"),
    (json.dumps(a_query()).encode(), [(topics.HEADER_REPLY_TO, topics.COMMANDS.encode())], "InvalidReplyTo"),
])
def test_what_can_never_be_answered_is_a_dead_letter(value: bytes | None, headers: Any, error_class: str) -> None:
    decoded = decode(value, **({"headers": headers} if headers is not None else {}))

    assert isinstance(decoded, DeadLetter) and decoded.error_class == error_class
