"""Dead-letter topics: a message that can never be processed goes to ``<topic>.dlq`` unchanged —
same key, same value, the original headers exactly as they came (order, duplicates and binary values
included) — followed by ``dlq.*`` headers naming the error and where it came from; nothing else is
added. The consumer then moves on. ``tickets dlq`` lists, shows, exports and replays them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from faststream.kafka import KafkaBroker
from ticket_contracts import topics

from service.logging import get_logger
from service.metrics import Metrics

from .decoding import DeadLetter

log = get_logger(__name__)


def dlq_headers(record: Any, error_class: str, error_message: str) -> list[tuple[str, bytes]]:
    """The record's own headers, untouched, then the ``dlq.*`` headers."""
    added = {
        topics.DLQ_HEADER_ERROR_CLASS: error_class,
        topics.DLQ_HEADER_ERROR_MESSAGE: error_message[:1000],
        topics.DLQ_HEADER_SOURCE_TOPIC: record.topic,
        topics.DLQ_HEADER_SOURCE_PARTITION: str(record.partition),
        topics.DLQ_HEADER_SOURCE_OFFSET: str(record.offset),
        topics.DLQ_HEADER_FAILED_AT: datetime.now(UTC).isoformat(),
    }
    return [*(record.headers or ()), *((name, value.encode()) for name, value in added.items())]


class DeadLetters:
    def __init__(self, broker: KafkaBroker, metrics: Metrics) -> None:
        self._broker = broker
        self._metrics = metrics

    async def send_many(self, letters: list[DeadLetter]) -> None:
        """Publish and await every letter; raises on a broker failure so the caller retries, never drops."""
        sends = []
        for letter in letters:
            record, error_class, error_message = letter.record, letter.error_class, letter.error_message
            headers = dlq_headers(record, error_class, error_message)
            log.warning("dead-lettered", topic=record.topic, partition=record.partition, offset=record.offset,
                        error=error_class)
            try:
                sent = await self._publish(record, record.value, headers)
            except MessageSizeTooLargeError as error:  # aiokafka refuses over-size records before sending
                sent = _failed(error)
            sends.append((record, headers, sent))
            self._metrics.dead_letters.labels(record.topic, error_class).inc()
        outcomes = await asyncio.gather(*(future for *_, future in sends), return_exceptions=True)
        for (record, headers, _), outcome in zip(sends, outcomes, strict=True):
            if isinstance(outcome, MessageSizeTooLargeError):
                # Larger than even the DLQ producer accepts: keep the headers and say what was dropped.
                dropped = [*headers, (topics.DLQ_HEADER_PAYLOAD_DROPPED, f"{len(record.value or b'')} bytes".encode())]
                await (await self._publish(record, b"", dropped))
            elif isinstance(outcome, BaseException):
                raise outcome

    async def _publish(self, record: Any, value: bytes | None, headers: list[tuple[str, bytes]]) -> Any:
        # An absent value stays absent only with a key (aiokafka needs one of the two).
        value = value if value is not None or record.key is not None else b""
        send_raw = getattr(self._broker, "send_raw", None)
        if send_raw is not None:
            return await send_raw(topics.dlq(record.topic), value, key=record.key, headers=headers)
        # A plain KafkaBroker (routing tests): FastStream's publish, which adds headers of its own.
        flat = {name: (v or b"").decode(errors="replace") for name, v in headers}
        return await self._broker.publish(value, topics.dlq(record.topic), key=record.key, headers=flat,
                                          no_confirm=True)


def _failed(error: BaseException) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future
