"""Every Kafka topic of the ticket service, in one place (SPEC §2)."""

from __future__ import annotations

COMMANDS = "tickets.commands.v1"
QUERIES = "tickets.queries.v1"
COMMAND_RESULTS = "tickets.command-results.v1"
EVENTS = "tickets.events.v1"
OPS = "tickets.ops.v1"
USER_EVENTS = "users.events.v1"

#: Topics the service consumes; each has a dead-letter twin.
INPUT_TOPICS: tuple[str, ...] = (COMMANDS, QUERIES, USER_EVENTS)


def dlq(topic: str) -> str:
    """The dead-letter topic of an input topic."""
    return f"{topic}.dlq"


DLQ_TOPICS: tuple[str, ...] = tuple(dlq(t) for t in INPUT_TOPICS)
OUTPUT_TOPICS: tuple[str, ...] = (COMMAND_RESULTS, EVENTS, OPS)
ALL_TOPICS: tuple[str, ...] = INPUT_TOPICS + OUTPUT_TOPICS + DLQ_TOPICS

# Message headers the service reads or writes.
HEADER_REPLY_TO = "reply_to"
HEADER_CORRELATION_ID = "correlation_id"
#: On every event, result and answer: the correlation id, the message_id of the message that caused it,
#: the message's ``type`` and its content type; ``traceparent``/``tracestate`` (W3C trace context) when
#: the command or query that caused it had one.
HEADER_CAUSATION_ID = "causation_id"
HEADER_TYPE = "type"
HEADER_CONTENT_TYPE = "content-type"
HEADER_TRACEPARENT = "traceparent"
HEADER_TRACESTATE = "tracestate"
JSON_CONTENT_TYPE = "application/json"
DLQ_HEADER_ERROR_CLASS = "dlq.error.class"
DLQ_HEADER_ERROR_MESSAGE = "dlq.error.message"
DLQ_HEADER_SOURCE_TOPIC = "dlq.source.topic"
DLQ_HEADER_SOURCE_PARTITION = "dlq.source.partition"
DLQ_HEADER_SOURCE_OFFSET = "dlq.source.offset"
DLQ_HEADER_FAILED_AT = "dlq.failed_at"
#: Set when the original value was too large even for the dead-letter topic and was dropped.
DLQ_HEADER_PAYLOAD_DROPPED = "dlq.payload_dropped"
#: Set by ``tickets dlq replay`` on a letter sent back to its source topic: ``<dlq topic>:<partition>:<offset>``.
DLQ_HEADER_REPLAYED_FROM = "dlq.replayed_from"
#: Every ``dlq.*`` header starts with this; a dead letter adds no other header to the original ones.
DLQ_HEADER_PREFIX = "dlq."
