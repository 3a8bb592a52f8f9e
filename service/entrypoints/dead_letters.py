"""Dead-letter topics: a message that can never be processed goes to ``<topic>.dlq`` unchanged,
with headers naming the error and where it came from; the consumer then moves on."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker
from ticket_contracts import topics

from service.logging import get_logger
from service.metrics import Metrics

from .decoding import headers_of

log = get_logger(__name__)


class DeadLetters:
    def __init__(self, broker: KafkaBroker, metrics: Metrics) -> None:
        self._broker = broker
        self._metrics = metrics

    async def send_many(self, letters: list[tuple[Any, str, str]]) -> None:
        """Publish and await every letter; raises on a broker failure so the caller retries, never drops."""
        sends = []
        for record, error_class, error_message in letters:
            headers = headers_of(record) | {
                topics.DLQ_HEADER_ERROR_CLASS: error_class,
                topics.DLQ_HEADER_ERROR_MESSAGE: error_message[:1000],
                topics.DLQ_HEADER_SOURCE_TOPIC: record.topic,
                topics.DLQ_HEADER_SOURCE_PARTITION: str(record.partition),
                topics.DLQ_HEADER_SOURCE_OFFSET: str(record.offset),
                topics.DLQ_HEADER_FAILED_AT: datetime.now(UTC).isoformat(),
            }
            log.warning("dead-lettered", topic=record.topic, partition=record.partition, offset=record.offset,
                        error=error_class)
            sends.append((record, headers, await self._publish(record, record.value or b"", headers)))
            self._metrics.dead_letters.labels(record.topic, error_class).inc()
        outcomes = await asyncio.gather(*(future for *_, future in sends), return_exceptions=True)
        for (record, headers, _), outcome in zip(sends, outcomes, strict=True):
            if isinstance(outcome, MessageSizeTooLargeError):
                # Larger than even the DLQ producer accepts: keep the headers and say what was dropped.
                dropped = headers | {topics.DLQ_HEADER_PAYLOAD_DROPPED: f"{len(record.value or b'')} bytes"}
                await (await self._publish(record, b"", dropped))
            elif isinstance(outcome, BaseException):
                raise outcome

    async def _publish(self, record: Any, value: bytes, headers: dict[str, str]) -> Any:
        return await self._broker.publish(value, topics.dlq(record.topic), key=record.key, headers=headers,
                                          no_confirm=True)
