"""The Kafka headers of everything the service publishes: events, results, answers.

Every one carries ``correlation_id``, ``causation_id``, ``type`` and ``content-type``, and the W3C
``traceparent``/``tracestate`` of the command or query that caused it when it had one (SPEC §7;
documented per channel in asyncapi.yaml). Events and results are published by the relay from their
stored JSON, so their ids are read back from it rather than stored twice.
"""

from __future__ import annotations

from typing import Any

import orjson
from ticket_contracts import topics

KafkaHeaders = list[tuple[str, bytes]]


def output_headers(*, correlation_id: Any, causation_id: Any, message_type: str,
                   traceparent: str | None = None, tracestate: str | None = None) -> dict[str, str]:
    headers = {
        topics.HEADER_CORRELATION_ID: str(correlation_id or causation_id),
        topics.HEADER_CAUSATION_ID: str(causation_id),
        topics.HEADER_TYPE: message_type,
        topics.HEADER_CONTENT_TYPE: topics.JSON_CONTENT_TYPE,
    }
    if traceparent:
        headers[topics.HEADER_TRACEPARENT] = traceparent
        if tracestate:
            headers[topics.HEADER_TRACESTATE] = tracestate
    return headers


def headers_of_stored(body: str, traceparent: str | None, tracestate: str | None) -> KafkaHeaders:
    """Headers for a stored event or result (its JSON text), ready for aiokafka."""
    message = orjson.loads(body)
    headers = output_headers(correlation_id=message.get("correlation_id"), causation_id=message["causation_id"],
                             message_type=message["type"], traceparent=traceparent, tracestate=tracestate)
    return kafka_headers(headers)


def kafka_headers(headers: dict[str, str]) -> KafkaHeaders:
    return [(name, value.encode()) for name, value in headers.items()]
