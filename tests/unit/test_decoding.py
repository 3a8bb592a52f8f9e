"""Raw records → commands, validation errors or dead letters, before any handler runs."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest
from ticket_contracts import Actor, CreateTicket, new_id, topics

from service.adapters.auth import ActorResolver
from service.entrypoints.decoding import BAD_REPLY_TO, NUL_MESSAGE, DeadLetter, decode_command
from service.handlers.messages import Incoming

RESOLVER = ActorResolver("trust")


def record(value: bytes, reply_to: str | None = None) -> SimpleNamespace:
    headers = [(topics.HEADER_REPLY_TO, reply_to.encode())] if reply_to else []
    return SimpleNamespace(value=value, headers=headers, key=b"k", topic=topics.COMMANDS, partition=0, offset=7)


def create(description: str = "D") -> CreateTicket:
    actor = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    return CreateTicket(actor=actor, payload={"ticket_id": new_id(), "title": "T", "description": description})


def test_a_valid_command_decodes_with_its_actor_and_reply_to() -> None:
    command = create()
    decoded = decode_command(record(command.model_dump_json().encode(), "tickets.replies.me"), RESOLVER, 10_000)
    assert isinstance(decoded, Incoming) and decoded.invalid is None
    assert decoded.command == command and decoded.reply_to == "tickets.replies.me"
    assert decoded.ticket_id == command.payload.ticket_id and decoded.correlation_id == command.message_id


@pytest.mark.parametrize(("value", "error_class"), [
    (None, "EmptyMessage"), (b"", "UndecodableMessage"), (b"x" * 10_001, "MessageTooLarge"), (b"{oops", "UndecodableMessage"),
    (b"[1, 2]", "UndecodableMessage"), (b'{"type": "ticket.explode", "message_id": "x"}', "UnknownMessageType"),
    (b'{"type": "ticket.create", "message_id": "not-a-uuid"}', "InvalidEnvelope"),
], ids=["tombstone", "empty", "too-large", "not-json", "not-an-object", "unknown-type", "bad-message-id"])
def test_what_can_never_be_processed_is_a_dead_letter(value: bytes | None, error_class: str) -> None:
    decoded = decode_command(record(value), RESOLVER, 10_000)
    assert isinstance(decoded, DeadLetter) and decoded.error_class == error_class


def test_an_invalid_but_decodable_command_is_a_validation_error_naming_fields_not_values() -> None:
    raw = json.loads(create().model_dump_json())
    raw["payload"]["title"] = "secret-" * 40
    decoded = decode_command(record(json.dumps(raw).encode(), "tickets.replies.me"), RESOLVER, 10_000)
    assert isinstance(decoded, Incoming) and decoded.invalid_reason == "validation_error"
    assert "title" in decoded.invalid and "secret" not in decoded.invalid
    assert decoded.actor is not None and decoded.reply_to == "tickets.replies.me"


@pytest.mark.parametrize("text", ["a\x00b", "\x00"])
def test_nul_characters_are_a_validation_error(text: str) -> None:
    decoded = decode_command(record(create(text).model_dump_json().encode()), RESOLVER, 10_000)
    assert isinstance(decoded, Incoming) and decoded.invalid == NUL_MESSAGE


def test_an_escaped_backslash_before_u0000_is_ordinary_text() -> None:
    decoded = decode_command(record(create("a\\u0000b").model_dump_json().encode()), RESOLVER, 10_000)
    assert isinstance(decoded, Incoming) and decoded.invalid is None


@pytest.mark.parametrize("reply_to", ["no such topic!", topics.EVENTS, topics.COMMAND_RESULTS, "x" * 250, ".."])
def test_a_reply_to_that_cannot_be_answered_is_refused(reply_to: str) -> None:
    decoded = decode_command(record(create().model_dump_json().encode(), reply_to), RESOLVER, 10_000)
    assert isinstance(decoded, Incoming) and decoded.invalid == BAD_REPLY_TO and decoded.reply_to is None
