"""Turning raw Kafka records into commands — or into dead letters.

Each record is parsed once within explicit limits (:mod:`.json_limits`), its envelope checked
(a JSON object with a known ``type`` and a ``message_id`` that is a UUID — required on the
wire, never made up by the service), then validated against the contract. What can never be
processed goes to the DLQ; a decodable but invalid command becomes a ``validation_error``
result, so the sender hears about it. Any other exception while decoding one record, whatever
its class, dead-letters that record (:func:`split_decoded`): decoding never stops a partition.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError
from ticket_contracts.commands import COMMAND_TYPES, command_adapter
from ticket_contracts.envelope import Actor as ContractActor
from ticket_contracts.topics import HEADER_CORRELATION_ID, HEADER_REPLY_TO

from service.adapters.auth import ActorResolver
from service.adapters.reply_topics import BAD_REPLY_TO, DEFAULT_REPLY_TOPICS, ReplyTopics
from service.adapters.retry import is_transient
from service.domain.errors import DomainError
from service.handlers.messages import Incoming
from service.logging import get_logger

from .json_limits import LimitExceeded, Undecodable, parse_bounded


#: An escaped NUL (``\u0000``) that is not itself an escaped backslash followed by "u0000".
_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
log = get_logger(__name__)
__all__ = ["BAD_REPLY_TO", "DeadLetter", "decode_command", "split_decoded"]


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
        try:
            decoded = decode(record)
        except Exception as error:  # a bug or a hostile record we did not foresee: it must not stop the partition
            if is_transient(error):
                raise
            log.warning("decoding failed unexpectedly; dead-lettering the record", topic=record.topic,
                        partition=record.partition, offset=record.offset, error=type(error).__name__)
            decoded = DeadLetter(record, type(error).__name__, "decoding failed unexpectedly")
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


def envelope(record: Any, value: bytes, known_types: Collection[str], kind: str) -> dict[str, Any] | DeadLetter:
    """The record's JSON object if it is a ``kind`` with a usable envelope (so it can be validated,
    and answered if invalid), else the dead letter saying why it never can be."""
    try:
        raw = parse_bounded(value)
    except LimitExceeded as exceeded:
        return DeadLetter(record, "LimitExceeded", str(exceeded))
    except Undecodable:
        return DeadLetter(record, "UndecodableMessage", "not JSON")
    if not isinstance(raw, dict):
        return DeadLetter(record, "UndecodableMessage", "not a JSON object")
    message_type = raw.get("type")
    if not isinstance(message_type, str) or message_type not in known_types:
        return DeadLetter(record, "UnknownMessageType", f"unknown {kind} type {str(message_type)[:100]!r}")
    if as_uuid(raw.get("message_id")) is None:
        return DeadLetter(record, "InvalidEnvelope", "message_id is missing or not a UUID")
    return raw


def decode_command(record: Any, resolver: ActorResolver, max_bytes: int,
                   reply_topics: ReplyTopics = DEFAULT_REPLY_TOPICS) -> Incoming | DeadLetter:
    if (too_big := oversize(record, max_bytes)) is not None:
        return too_big
    value: bytes = record.value
    raw = envelope(record, value, COMMAND_TYPES, "command")
    if isinstance(raw, DeadLetter):
        return raw
    headers = headers_of(record)
    reply_to = headers.get(HEADER_REPLY_TO) or None
    allowed_reply_to = reply_to if reply_to and reply_topics.allows(reply_to) else None
    try:
        command = command_adapter.validate_python(raw)
    except ValidationError as error:
        return _invalid(raw, headers, allowed_reply_to, summarise(error), resolver)
    try:
        actor = resolver.resolve(command.actor, command.actor_token)
    except DomainError as denied:  # an authentication failure: answered, never recorded (retry with a token)
        refused = _incoming(raw, headers, allowed_reply_to, None, denied.message, denied.code)
        refused.unauthenticated = True
        return refused
    try:
        resolver.authorise(actor, command.type)
    except DomainError as denied:
        return _incoming(raw, headers, allowed_reply_to, None, denied.message, denied.code)
    problem = None
    if b"\\u0000" in value and _NUL.search(value) and command.type != "ticket.ingest_email":  # the gateway's mail is cleaned instead
        problem = NUL_MESSAGE
    elif reply_to and allowed_reply_to is None:
        problem = BAD_REPLY_TO
    if problem:
        return _incoming(raw, headers, allowed_reply_to, actor, problem, "validation_error")
    return Incoming(
        message_id=command.message_id, command_type=command.type,
        correlation_id=command.correlation_id or _header_uuid(headers) or command.message_id,
        reply_to=allowed_reply_to, actor=actor,
        ticket_id=getattr(command.payload, "ticket_id", None), command=command,
    )


def _invalid(raw: dict[str, Any], headers: dict[str, str], reply_to: str | None, message: str,
             resolver: ActorResolver) -> Incoming:
    actor = None
    try:
        asserted = ContractActor.model_validate(raw.get("actor"))
        actor = resolver.resolve(asserted, raw.get("actor_token"))
    except (ValidationError, DomainError):
        pass
    return _incoming(raw, headers, reply_to, actor, message, "validation_error")


def _incoming(raw: dict[str, Any], headers: dict[str, str], reply_to: str | None, actor: Any, message: str,
              reason: str) -> Incoming:
    message_id = uuid.UUID(str(raw["message_id"]))
    given = raw.get("payload")
    payload: dict[str, Any] = given if isinstance(given, dict) else {}
    return Incoming(
        message_id=message_id, command_type=str(raw["type"]),
        correlation_id=as_uuid(raw.get("correlation_id")) or _header_uuid(headers) or message_id,
        reply_to=reply_to, actor=actor,
        ticket_id=as_uuid(payload.get("ticket_id")), invalid=message, invalid_reason=reason,
    )


def as_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value and isinstance(value, str) else None
    except ValueError:
        return None


def _header_uuid(headers: dict[str, str]) -> uuid.UUID | None:
    return as_uuid(headers.get(HEADER_CORRELATION_ID))
