"""What a dead letter carries: the original headers exactly, then dlq.* headers and nothing else;
and a value too large even for the DLQ producer is dropped with a note, never lost silently."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord
from ticket_contracts import topics

from service.entrypoints.dead_letters import DeadLetters
from service.entrypoints.decoding import DeadLetter
from service.metrics import Metrics

ORIGINAL = [("b", b"2"), ("a", b"1"), ("a", b"1"), ("bin", b"\xff\x00"), ("null", None)]


def _record(value: bytes) -> ConsumerRecord:
    return ConsumerRecord(topic=topics.COMMANDS, partition=3, offset=17, timestamp=0, timestamp_type=0,
                          key=b"k", value=value, checksum=None, serialized_key_size=1,
                          serialized_value_size=len(value), headers=tuple(ORIGINAL))


class Broker:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent: list[tuple[str, bytes | None, bytes | None, list[Any]]] = []

    async def send_raw(self, topic: str, value: bytes | None, *, key: bytes | None, headers: list[Any],
                       partition: int | None = None) -> asyncio.Future[Any]:
        if value is not None and len(value) > self.limit:
            raise MessageSizeTooLargeError()
        self.sent.append((topic, key, value, headers))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_original_headers_exactly_then_only_dlq_headers() -> None:
    broker = Broker(limit=1000)
    await DeadLetters(broker, Metrics()).send_many([DeadLetter(_record(b"{bad"), "UndecodableMessage", "no")])  # type: ignore[arg-type]
    ((topic, key, value, headers),) = broker.sent
    assert (topic, key, value) == (topics.dlq(topics.COMMANDS), b"k", b"{bad")
    assert headers[:len(ORIGINAL)] == ORIGINAL
    added = dict(headers[len(ORIGINAL):])
    assert set(added) == {topics.DLQ_HEADER_ERROR_CLASS, topics.DLQ_HEADER_ERROR_MESSAGE, topics.DLQ_HEADER_SOURCE_TOPIC,
                          topics.DLQ_HEADER_SOURCE_PARTITION, topics.DLQ_HEADER_SOURCE_OFFSET, topics.DLQ_HEADER_FAILED_AT}
    assert (added[topics.DLQ_HEADER_SOURCE_PARTITION], added[topics.DLQ_HEADER_SOURCE_OFFSET]) == (b"3", b"17")


async def test_a_value_too_large_for_the_dlq_is_dropped_with_a_note() -> None:
    broker = Broker(limit=10)
    await DeadLetters(broker, Metrics()).send_many([DeadLetter(_record(b"x" * 50), "MessageTooLarge", "big")])  # type: ignore[arg-type]
    ((_, key, value, headers),) = broker.sent
    assert (key, value) == (b"k", b"")
    assert headers[:len(ORIGINAL)] == ORIGINAL
    assert headers[-1] == (topics.DLQ_HEADER_PAYLOAD_DROPPED, b"50 bytes")
