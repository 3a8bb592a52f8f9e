"""Raw records → commands, validation errors or dead letters, before any handler runs."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest
from ticket_contracts import Actor, CreateTicket, new_id, topics

from service.adapters.auth import ActorResolver
from service.adapters.reply_topics import ReplyTopics
from service.entrypoints import decoding
from service.entrypoints.decoding import BAD_REPLY_TO, NUL_MESSAGE, DeadLetter, decode_command, split_decoded
from service.entrypoints.json_limits import MAX_DEPTH, MAX_ITEMS, MAX_STRING_CHARS
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


@pytest.mark.parametrize("reply_to", ["no such topic!", topics.EVENTS, topics.COMMAND_RESULTS, "x" * 250, "..",
                                      "notifications.commands.v1", "tickets.replies.", "tickets.repliesX.me",
                                      "tickets.replies.me\n", "TICKETS.REPLIES.me"])
def test_a_reply_to_that_cannot_be_answered_is_refused(reply_to: str) -> None:
    decoded = decode_command(record(create().model_dump_json().encode(), reply_to), RESOLVER, 10_000)
    assert isinstance(decoded, Incoming) and decoded.invalid == BAD_REPLY_TO and decoded.reply_to is None


def test_a_reply_to_matching_a_configured_pattern_is_used() -> None:
    value = create().model_dump_json().encode()
    partners = ReplyTopics(r"(tickets\.replies|partner\.inbox)\.[a-z0-9-]+")
    assert decode_command(record(value, "partner.inbox.a-1"), RESOLVER, 10_000, partners).reply_to == "partner.inbox.a-1"
    refused = decode_command(record(value, "tickets.replies.me"), RESOLVER, 10_000, ReplyTopics(r"partner\.[a-z]+"))
    assert refused.invalid == BAD_REPLY_TO and refused.reply_to is None


def test_a_refused_reply_to_is_never_kept_even_when_the_command_is_invalid_anyway() -> None:
    raw = json.loads(create().model_dump_json())
    raw["payload"]["title"] = ""
    decoded = decode_command(record(json.dumps(raw).encode(), "notifications.commands.v1"), RESOLVER, 10_000)
    assert isinstance(decoded, Incoming) and decoded.invalid_reason == "validation_error" and decoded.reply_to is None


def test_a_command_without_message_id_is_an_invalid_envelope_never_given_a_server_id() -> None:
    raw = json.loads(create().model_dump_json())
    del raw["message_id"]
    decoded = decode_command(record(json.dumps(raw).encode(), "tickets.replies.me"), RESOLVER, 10_000)
    assert isinstance(decoded, DeadLetter) and decoded.error_class == "InvalidEnvelope"


@pytest.mark.parametrize("message_id", [None, 12, ["x"], {"a": 1}, "", "0" * 31])
def test_a_message_id_that_is_not_a_uuid_string_is_an_invalid_envelope(message_id: object) -> None:
    raw = json.loads(create().model_dump_json()) | {"message_id": message_id}
    decoded = decode_command(record(json.dumps(raw).encode()), RESOLVER, 10_000)
    assert isinstance(decoded, DeadLetter) and decoded.error_class == "InvalidEnvelope"


def _nested(depth: int) -> bytes:
    raw = json.loads(create().model_dump_json())
    raw["payload"]["title"] = "[" * depth + "]" * depth  # the text is fine: only structure counts
    value = json.dumps(raw).encode()
    return value[:-1] + b', "extra": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


@pytest.mark.parametrize("depth", [MAX_DEPTH, 199, 201, 10_000])
def test_json_nested_beyond_the_limit_is_a_dead_letter_not_a_recursion_error(depth: int) -> None:
    decoded = decode_command(record(_nested(depth)), RESOLVER, 1_000_000)
    assert isinstance(decoded, DeadLetter) and decoded.error_class == "LimitExceeded"
    assert "nested" in decoded.error_message or "recursion" in decoded.error_message


def test_json_nested_within_the_limit_is_validated_as_usual() -> None:
    decoded = decode_command(record(_nested(MAX_DEPTH - 3)), RESOLVER, 1_000_000)
    assert isinstance(decoded, Incoming) and decoded.invalid_reason == "validation_error"
    assert "extra" in decoded.invalid


@pytest.mark.parametrize(("extra", "what"), [
    ("x" * (MAX_STRING_CHARS + 1), "string"),
    ({"k" * (MAX_STRING_CHARS + 1): 1}, "key"),
    (list(range(MAX_ITEMS + 1)), "array"),
    ({str(i): i for i in range(MAX_ITEMS + 1)}, "object"),
    (2**63, "integer"), (-(2**63) - 1, "integer"), (10**4000, "integer"),
], ids=["string", "key", "array", "object", "int-over", "int-under", "int-4000-digits"])
def test_each_size_limit_dead_letters_the_record(extra: object, what: str) -> None:
    raw = json.loads(create().model_dump_json()) | {"extra": extra}
    decoded = decode_command(record(json.dumps(raw).encode()), RESOLVER, 10_000_000)
    assert isinstance(decoded, DeadLetter) and decoded.error_class == "LimitExceeded"
    assert what in decoded.error_message or "number" in decoded.error_message


def test_infinite_numbers_are_a_dead_letter() -> None:
    value = create().model_dump_json().encode()[:-1] + b', "extra": 1e400}'
    decoded = decode_command(record(value), RESOLVER, 10_000)
    assert isinstance(decoded, DeadLetter) and decoded.error_class == "LimitExceeded"


def test_any_exception_while_decoding_dead_letters_only_that_record(monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = create(), create()

    def decode(r: object) -> object:
        if r.value == bad.model_dump_json().encode():  # type: ignore[attr-defined]
            raise RecursionError("maximum recursion depth exceeded")
        return decode_command(r, RESOLVER, 10_000)

    records = [record(bad.model_dump_json().encode()), record(good.model_dump_json().encode())]
    decoded, dead = split_decoded(records, decode)
    assert [item.message_id for _, item in decoded] == [good.message_id]
    assert [(letter.record, letter.error_class) for letter in dead] == [(records[0], "RecursionError")]


def test_a_transient_failure_while_decoding_is_not_blamed_on_the_record() -> None:
    def decode(r: object) -> object:
        raise ConnectionError("identity provider unreachable")

    with pytest.raises(ConnectionError):
        split_decoded([record(create().model_dump_json().encode())], decode)


def test_the_decoder_keeps_no_old_parser() -> None:
    assert not hasattr(decoding, "json"), "every parse goes through json_limits.parse_bounded"
