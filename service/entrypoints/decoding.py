"""Turning raw Kafka records into commands — or into dead letters.

Fast path: one pydantic parse of the bytes. Only when that fails do we look closer, to
tell a message that can never be processed (→ DLQ) from a decodable but invalid command
(→ a ``validation_error`` result, so the sender hears about it).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError
from ticket_contracts.commands import COMMAND_TYPES, command_adapter
from ticket_contracts.envelope import Actor as ContractActor
from ticket_contracts import topics
from ticket_contracts.topics import HEADER_CORRELATION_ID, HEADER_REPLY_TO

from service.adapters.auth import ActorResolver
from service.domain.errors import DomainError
from service.handlers.messages import Incoming


#: An escaped NUL (``\u0000``) that is not itself an escaped backslash followed by "u0000".
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
#: Results never go to the service's own topics through reply_to: a forged header must not inject.
_OWN_TOPICS = frozenset(topics.ALL_TOPICS)
BAD_REPLY_TO = "reply_to is not a valid topic name, or names one of the ticket service's own topics"


def reply_topic_problem(reply_to: str) -> str | None:
    """Why ``reply_to`` cannot be answered to, or None when it can."""
    if not _TOPIC_NAME.match(reply_to) or reply_to in (".", "..") or reply_to in _OWN_TOPICS:
        return BAD_REPLY_TO
    return None


NUL_MESSAGE = "text fields must not contain NUL characters (\\u0000)"


@dataclass(slots=True)
class DeadLetter:
    record: Any
    error_class: str
    error_message: str


T = TypeVar("T")


def split_decoded(records: Iterable[Any], decode: Callable[[Any], T | DeadLetter]
                  ) -> tuple[list[tuple[Any, T]], list[DeadLetter]]:
    """Decode every record: (record, decoded) pairs to handle, and letters for the DLQ."""
    good: list[tuple[Any, T]] = []
    dead: list[DeadLetter] = []
    for record in records:
        decoded = decode(record)
        if isinstance(decoded, DeadLetter):
            dead.append(decoded)
        else:
            good.append((record, decoded))
    return good, dead


def headers_of(record: Any) -> dict[str, str]:
    return {k: v.decode(errors="replace") for k, v in (record.headers or ()) if v is not None}


def summarise(error: ValidationError, limit: int = 5) -> str:
    """Field paths and messages only: never the offending values."""
    parts = []
    for e in error.errors(include_input=False, include_url=False)[:limit]:
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("ticket."))
        parts.append(f"{loc or 'message'}: {e['msg']}")
    more = error.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def oversize(record: Any, max_bytes: int) -> DeadLetter | None:
    """A dead letter for a tombstone or an over-size record; None when the size is fine."""
    value: bytes | None = record.value
    if value is not None and len(value) <= max_bytes:
        return None
    size = 0 if value is None else len(value)
    return DeadLetter(record, "MessageTooLarge" if value else "EmptyMessage", f"{size} bytes (limit {max_bytes})")


def triage(record: Any, value: bytes, known_types: Collection[str], kind: str) -> dict[str, Any] | DeadLetter:
    """For a record that failed validation: its JSON object if it is a ``kind`` with a usable
    envelope (so it can be answered), else the dead letter saying why it never can be."""
    try:
        raw = json.loads(value)
    except (ValueError, UnicodeDecodeError) as undecodable:
        return DeadLetter(record, "UndecodableMessage", f"not JSON: {type(undecodable).__name__}")
    if not isinstance(raw, dict):
        return DeadLetter(record, "UndecodableMessage", "not a JSON object")
    if raw.get("type") not in known_types:
        return DeadLetter(record, "UnknownMessageType", f"unknown {kind} type {str(raw.get('type'))[:100]!r}")
    if as_uuid(raw.get("message_id")) is None:
        return DeadLetter(record, "InvalidEnvelope", "message_id is missing or not a UUID")
    return raw


def decode_command(record: Any, resolver: ActorResolver, max_bytes: int) -> Incoming | DeadLetter:
    if (too_big := oversize(record, max_bytes)) is not None:
        return too_big
    value: bytes = record.value
    headers = headers_of(record)
    try:
        command = command_adapter.validate_json(value)
    except ValidationError as error:
        return _invalid(record, value, headers, error, resolver)
    try:
        actor = resolver.resolve(command.actor, command.actor_token)
        resolver.authorise(actor, command.type)
    except DomainError as denied:
        return _incoming(command.model_dump(mode="json"), headers, command.actor, denied.message, denied.code)
    problem = None
    if b"\\u0000" in value and _NUL.search(value) and command.type != "ticket.ingest_email":  # the gateway's mail is cleaned instead
        problem = NUL_MESSAGE
    elif headers.get(HEADER_REPLY_TO) and reply_topic_problem(headers[HEADER_REPLY_TO]):
        problem = BAD_REPLY_TO
    if problem:
        invalid = _incoming(command.model_dump(mode="json"), headers, None, problem, "validation_error")
        invalid.actor = actor
        return invalid
    return Incoming(
        message_id=command.message_id, command_type=command.type,
        correlation_id=command.correlation_id or _header_uuid(headers) or command.message_id,
        reply_to=headers.get(HEADER_REPLY_TO) or None, actor=actor,
        ticket_id=getattr(command.payload, "ticket_id", None), command=command,
    )


def _invalid(record: Any, value: bytes, headers: dict[str, str], error: ValidationError,
             resolver: ActorResolver) -> Incoming | DeadLetter:
    raw = triage(record, value, COMMAND_TYPES, "command")
    if isinstance(raw, DeadLetter):
        return raw
    actor = None
    try:
        asserted = ContractActor.model_validate(raw.get("actor"))
        actor = resolver.resolve(asserted, raw.get("actor_token"))
    except (ValidationError, DomainError):
        pass
    incoming = _incoming(raw, headers, None, summarise(error), "validation_error")
    incoming.actor = actor
    return incoming


def _incoming(raw: dict[str, Any], headers: dict[str, str], asserted: Any, message: str, reason: str) -> Incoming:
    message_id = uuid.UUID(str(raw["message_id"]))
    given = raw.get("payload")
    payload: dict[str, Any] = given if isinstance(given, dict) else {}
    return Incoming(
        message_id=message_id, command_type=str(raw["type"]),
        correlation_id=as_uuid(raw.get("correlation_id")) or _header_uuid(headers) or message_id,
        reply_to=_usable_reply_to(headers), actor=None,
        ticket_id=as_uuid(payload.get("ticket_id")), invalid=message, invalid_reason=reason,
    )


def _usable_reply_to(headers: dict[str, str]) -> str | None:
    reply_to = headers.get(HEADER_REPLY_TO)
    return reply_to if reply_to and not reply_topic_problem(reply_to) else None


def as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _header_uuid(headers: dict[str, str]) -> uuid.UUID | None:
    return as_uuid(headers.get(HEADER_CORRELATION_ID))
