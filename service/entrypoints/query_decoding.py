"""Turning raw Kafka records into queries to answer — or into dead letters.

A query is answered only where it asks to be: a record without a usable ``reply_to`` header
can never be answered and goes to the DLQ, as do undecodable, unknown-type and over-size
records. A decodable but invalid query, or one whose actor is refused, is answered with an
error (``validation_error`` / ``forbidden``) instead of being run.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import ValidationError
from ticket_contracts import topics
from ticket_contracts.queries import Query, QueryBase, query_adapter

from service.adapters.auth import ActorResolver
from service.domain.errors import DomainError
from service.domain.values import Actor

from .decoding import DeadLetter, headers_of, summarise

QUERY_TYPES = frozenset(model.model_fields["type"].default for model in get_args(get_args(Query)[0]))
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
#: Answers never go to the service's own topics: a forged reply_to must not inject into them.
_OWN_TOPICS = frozenset(topics.ALL_TOPICS)


@dataclass(slots=True)
class IncomingQuery:
    record: Any
    reply_to: str
    message_id: uuid.UUID
    query_type: str
    correlation_id: uuid.UUID
    query: QueryBase | None = None
    actor: Actor | None = None
    #: (reason code, message) to answer with instead of running the query.
    refusal: tuple[str, str] | None = None


def decode_query(record: Any, resolver: ActorResolver, max_bytes: int) -> IncomingQuery | DeadLetter:
    value: bytes | None = record.value
    if value is None or len(value) > max_bytes:
        size = 0 if value is None else len(value)
        return DeadLetter(record, "MessageTooLarge" if value else "EmptyMessage", f"{size} bytes (limit {max_bytes})")
    try:
        query: QueryBase = query_adapter.validate_json(value)  # type: ignore[assignment]
    except ValidationError as error:
        return _invalid(record, value, error)
    reply_to = _reply_to(record)
    if isinstance(reply_to, DeadLetter):
        return reply_to
    incoming = IncomingQuery(record, reply_to, query.message_id, query.type,
                             query.correlation_id or query.message_id, query=query)
    try:
        incoming.actor = resolver.resolve(query.actor, query.actor_token)
    except DomainError as denied:
        incoming.refusal = (denied.code, denied.message)
    return incoming


def _invalid(record: Any, value: bytes, error: ValidationError) -> IncomingQuery | DeadLetter:
    try:
        raw = json.loads(value)
    except (ValueError, UnicodeDecodeError) as undecodable:
        return DeadLetter(record, "UndecodableMessage", f"not JSON: {type(undecodable).__name__}")
    if not isinstance(raw, dict):
        return DeadLetter(record, "UndecodableMessage", "not a JSON object")
    if raw.get("type") not in QUERY_TYPES:
        return DeadLetter(record, "UnknownMessageType", f"unknown query type {str(raw.get('type'))[:100]!r}")
    message_id = _uuid(raw.get("message_id"))
    if message_id is None:
        return DeadLetter(record, "InvalidEnvelope", "message_id is missing or not a UUID")
    reply_to = _reply_to(record)
    if isinstance(reply_to, DeadLetter):
        return reply_to
    return IncomingQuery(record, reply_to, message_id, str(raw["type"]),
                         _uuid(raw.get("correlation_id")) or message_id,
                         refusal=("validation_error", summarise(error)))


def _reply_to(record: Any) -> str | DeadLetter:
    reply_to = headers_of(record).get(topics.HEADER_REPLY_TO, "")
    if not reply_to:
        return DeadLetter(record, "MissingReplyTo", "a query needs a reply_to header: its answer has nowhere to go")
    if not _TOPIC_NAME.match(reply_to) or reply_to in (".", ".."):
        return DeadLetter(record, "InvalidReplyTo", "reply_to is not a valid topic name")
    if reply_to in _OWN_TOPICS:
        return DeadLetter(record, "InvalidReplyTo", "reply_to names one of the ticket service's own topics")
    return reply_to


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None
