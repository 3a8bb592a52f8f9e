"""Turning raw Kafka records into queries to answer — or into dead letters.

A query is answered only where it asks to be: a record without a usable ``reply_to`` header
(missing, or not matching ``TICKETS_REPLY_TO_PATTERN``) can never be answered and goes to the DLQ, as do undecodable, unknown-type and over-size
records. A decodable but invalid query, or one whose actor is refused, is answered with an
error (``validation_error`` / ``forbidden``) instead of being run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import ValidationError
from ticket_contracts import topics
from ticket_contracts.queries import Query, QueryBase, query_adapter

from service.adapters.auth import ActorResolver
from service.adapters.reply_topics import DEFAULT_REPLY_TOPICS, ReplyTopics
from service.domain.errors import DomainError
from service.domain.values import Actor

from .decoding import DeadLetter, as_uuid, envelope, headers_of, oversize, summarise

QUERY_TYPES = frozenset(model.model_fields["type"].default for model in get_args(get_args(Query)[0]))


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


def decode_query(record: Any, resolver: ActorResolver, max_bytes: int,
                 reply_topics: ReplyTopics = DEFAULT_REPLY_TOPICS) -> IncomingQuery | DeadLetter:
    if (too_big := oversize(record, max_bytes)) is not None:
        return too_big
    raw = envelope(record, record.value, QUERY_TYPES, "query")
    if isinstance(raw, DeadLetter):
        return raw
    reply_to = _reply_to(record, reply_topics)
    if isinstance(reply_to, DeadLetter):
        return reply_to
    message_id = uuid.UUID(raw["message_id"])
    try:
        query: QueryBase = query_adapter.validate_python(raw)  # type: ignore[assignment]
    except ValidationError as error:
        return IncomingQuery(record, reply_to, message_id, str(raw["type"]),
                             as_uuid(raw.get("correlation_id")) or message_id,
                             refusal=("validation_error", summarise(error)))
    incoming = IncomingQuery(record, reply_to, query.message_id, query.type,
                             query.correlation_id or query.message_id, query=query)
    try:
        incoming.actor = resolver.resolve(query.actor, query.actor_token)
    except DomainError as denied:
        incoming.refusal = (denied.code, denied.message)
    return incoming


def _reply_to(record: Any, reply_topics: ReplyTopics) -> str | DeadLetter:
    reply_to = headers_of(record).get(topics.HEADER_REPLY_TO, "")
    if not reply_to:
        return DeadLetter(record, "MissingReplyTo", "a query needs a reply_to header: its answer has nowhere to go")
    if problem := reply_topics.problem(reply_to):
        return DeadLetter(record, "InvalidReplyTo", problem)
    return reply_to
