"""The AsyncAPI document of the service: FastStream's, plus the Kafka headers of every message.

FastStream documents channels and payloads from the subscribers and publishers but has no notion
of message headers, so :class:`TicketAsyncAPI` adds them here, next to the code that writes them
(``asyncapi.yaml`` is generated from this; never hand-edit it).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from faststream.specification import AsyncAPI
from ticket_contracts import topics

_UUID = {"type": "string", "format": "uuid"}
_TRACEPARENT = {
    "type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
    "description": "W3C trace context (https://www.w3.org/TR/trace-context/).",
}
_TRACESTATE = {"type": "string", "description": "W3C trace context vendor state, carried with traceparent."}


def _headers(properties: dict[str, Any], required: list[str], *, more: bool = True) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": more}


def output_headers(description: str) -> dict[str, Any]:
    """Headers of everything the service answers or announces: events, results, answers."""
    return _headers({
        topics.HEADER_CORRELATION_ID: _UUID | {"description": "The correlation id of the command or query."},
        topics.HEADER_CAUSATION_ID: _UUID | {"description": description},
        topics.HEADER_TYPE: {"type": "string", "description": "The message's `type`, as in the payload."},
        topics.HEADER_CONTENT_TYPE: {"type": "string", "const": topics.JSON_CONTENT_TYPE},
        topics.HEADER_TRACEPARENT: _TRACEPARENT | {
            "description": "Present when the command or query had one: a span of the same trace."},
        topics.HEADER_TRACESTATE: _TRACESTATE,
    }, [topics.HEADER_CORRELATION_ID, topics.HEADER_CAUSATION_ID, topics.HEADER_TYPE, topics.HEADER_CONTENT_TYPE])


def input_headers(*, reply_to_required: bool) -> dict[str, Any]:
    return _headers({
        topics.HEADER_REPLY_TO: {"type": "string", "description": "Topic for a copy of the result / the answer."},
        topics.HEADER_CORRELATION_ID: {"type": "string", "description": "Optional; the payload's field rules."},
        topics.HEADER_TRACEPARENT: _TRACEPARENT | {"description": "Optional W3C trace context; continued."},
        topics.HEADER_TRACESTATE: _TRACESTATE,
        topics.DLQ_HEADER_REPLAYED_FROM: {"type": "string", "description": "Set by `tickets dlq replay`: the "
                                          "letter (<dlq topic>:<partition>:<offset>) this record came back from."},
    }, [topics.HEADER_REPLY_TO] if reply_to_required else [])


def dead_letter_headers() -> dict[str, Any]:
    text = {"type": "string"}
    return _headers({
        topics.DLQ_HEADER_ERROR_CLASS: text | {"description": "Why the message can never be processed."},
        topics.DLQ_HEADER_ERROR_MESSAGE: text | {"description": "Details: field paths, never values."},
        topics.DLQ_HEADER_SOURCE_TOPIC: text,
        topics.DLQ_HEADER_SOURCE_PARTITION: text | {"description": "Decimal."},
        topics.DLQ_HEADER_SOURCE_OFFSET: text | {"description": "Decimal."},
        topics.DLQ_HEADER_FAILED_AT: text | {"format": "date-time"},
        topics.DLQ_HEADER_PAYLOAD_DROPPED: text | {"description": "Set when the value was too large to keep."},
        topics.DLQ_HEADER_REPLAYED_FROM: text | {"description": "The letter (<dlq topic>:<partition>:<offset>) "
                                                  "this record was replayed from by `tickets dlq replay`."},
    }, [topics.DLQ_HEADER_ERROR_CLASS, topics.DLQ_HEADER_ERROR_MESSAGE, topics.DLQ_HEADER_SOURCE_TOPIC,
        topics.DLQ_HEADER_SOURCE_PARTITION, topics.DLQ_HEADER_SOURCE_OFFSET, topics.DLQ_HEADER_FAILED_AT])


#: Channel address → the headers its messages carry.
HEADERS: dict[str, dict[str, Any]] = {
    topics.COMMANDS: input_headers(reply_to_required=False),
    topics.QUERIES: input_headers(reply_to_required=True),
    topics.USER_EVENTS: _headers({topics.DLQ_HEADER_REPLAYED_FROM: {
        "type": "string", "description": "Set by `tickets dlq replay`: the letter this record came back from."}}, []),
    topics.EVENTS: output_headers("The message_id of the command that caused the event."),
    topics.COMMAND_RESULTS: output_headers("The message_id of the command."),
    "reply_to": output_headers("The message_id of the query."),
    topics.OPS: _headers({
        topics.HEADER_TYPE: {"type": "string", "const": "ops.heartbeat"},
        topics.HEADER_CONTENT_TYPE: {"type": "string", "const": topics.JSON_CONTENT_TYPE},
    }, [topics.HEADER_TYPE, topics.HEADER_CONTENT_TYPE]),
} | {topics.dlq(topic): dead_letter_headers() for topic in topics.INPUT_TOPICS}


class TicketAsyncAPI(AsyncAPI):
    """FastStream's AsyncAPI 3 document with each message's headers (see :data:`HEADERS`)."""

    def to_specification(self) -> Any:
        spec = super().to_specification()
        for channel in spec.channels.values():  # type: ignore[attr-defined]
            for reference in channel.messages.values():
                name = unquote(reference.ref.rsplit("/", 1)[-1])
                message = spec.components.messages[name]  # type: ignore[attr-defined]
                message.headers = HEADERS[channel.address]
        return spec
