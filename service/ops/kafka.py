"""Kafka clients for the operator tools, built from the service's settings in one place.

:func:`client_options` is the single source of connection options (bootstrap servers and, once
configured, TLS/SASL) for every producer, consumer and admin client the tools open, so a security
setting added to :class:`~service.settings.Settings` reaches all of them through one function.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from service.settings import Settings


_MAX_QUIET_POLLS = 5


class TopicNotFound(LookupError):
    pass


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka options shared by every client of the tools: where the brokers are, how to connect."""
    from service.entrypoints.kafka_security import kafka_security

    return {"bootstrap_servers": settings.kafka_bootstrap, **kafka_security(settings).client_kwargs()}


@asynccontextmanager
async def producer(settings: Settings, **options: Any) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer that waits for every in-sync replica; stopped (flushed) on exit."""
    made = AIOKafkaProducer(**client_options(settings), acks="all",
                            max_request_size=settings.producer_max_request_bytes, **options)
    await made.start()
    try:
        yield made
    finally:
        await made.stop()


@asynccontextmanager
async def reader(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer without a group (it commits nothing and disturbs no one)."""
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    found = consumer.partitions_for_topic(topic)
    if not found:
        await consumer.client.force_metadata_update()
        found = consumer.partitions_for_topic(topic)
    if not found:
        raise TopicNotFound(f"topic {topic} does not exist on the broker")
    return [TopicPartition(topic, p) for p in sorted(found)]


async def topic_partitions(settings: Settings, topic: str) -> set[int]:
    """The partitions of an existing topic (asked through the admin API, so nothing is auto-created)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            raise TopicNotFound(f"topic {topic} does not exist on the broker")
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {p["partition"] for d in described if d["topic"] == topic for p in d["partitions"]}


async def read_all(consumer: AIOKafkaConsumer, topic: str, partitions: Iterable[int] | None = None,
                   *, idle_s: float = 0.3) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` (or of some of its partitions) from the beginning to the end.

    The end is the larger of ``end_offsets()`` (which under-reports on some brokers) and each fetch
    response's high-water mark; once there, one more short poll makes sure nothing was missed."""
    tps = await partitions_of(consumer, topic)
    if partitions is not None:
        wanted = set(partitions)
        tps = [tp for tp in tps if tp.partition in wanted]
    if not tps:
        return
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    quiet_polls = 0
    while True:
        behind = [tp for tp in tps if await consumer.position(tp) < max(ends[tp], consumer.highwater(tp) or 0)]
        batches = await consumer.getmany(*(behind or tps), timeout_ms=1000 if behind else int(idle_s * 1000))
        quiet_polls = 0 if any(batches.values()) else quiet_polls + 1
        # At the end and nothing more came, or "behind" an end that never arrives (control records).
        if quiet_polls and (not behind or quiet_polls >= _MAX_QUIET_POLLS):
            return
        for tp in tps:
            for record in batches.get(tp, ()):
                yield record

