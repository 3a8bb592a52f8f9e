"""The relay's batched publisher on a real broker: every record lands on the partition the default
partitioner picks for its key, in the order given, with its headers; a full batch continues in
the next one; a topic the broker refuses fails its own records and nothing else."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from service.adapters.kafka_batches import OutgoingRecord, batched_publisher
from tests.support.infra import fresh_topics
from tests.support.streams import TopicReader
from tests.support.waiting import eventually

PARTITIONS = 4


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    # Small batches (4 KiB), so a round of a few hundred records needs several per partition; and
    # a short wait for the metadata of a topic that never comes.
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_batch_size=4096, request_timeout_ms=3000)
    await producer.start()
    yield producer
    await producer.stop()


async def test_records_go_to_their_keys_partitions_in_order_across_full_batches(
        kafka_bootstrap: str, producer: AIOKafkaProducer) -> None:
    a, b = (await fresh_topics(kafka_bootstrap, ["batches.a", "batches.b"], partitions=PARTITIONS)).values()
    keys = [str(uuid.uuid4()).encode() for _ in range(12)]
    records: list[OutgoingRecord] = [
        (f"{n}".encode() + b"." * 200, a if n % 3 else b, keys[n % len(keys)], [("n", str(n).encode())])
        for n in range(300)]
    reader = await TopicReader(kafka_bootstrap, a, b).start()
    try:
        acks = await batched_publisher(producer)(records)
        assert len(acks) == len(records)
        await asyncio.gather(*acks)
        await eventually(lambda: len(reader.records) == len(records), what="every record")
    finally:
        await reader.stop()

    all_partitions = list(range(PARTITIONS))
    expected = defaultdict(list)
    for value, topic, key, _ in records:
        expected[(topic, DefaultPartitioner()(key, all_partitions, all_partitions))].append(value)
    got = defaultdict(list)
    for record in reader.records:
        got[(record.topic, record.partition)].append(record.value)
        assert record.headers == (("n", record.value.split(b".")[0]),)
    assert got == expected  # the same partitions, each in the order given
    assert len(expected) > 2


async def test_a_topic_the_broker_refuses_fails_only_its_own_records(
        kafka_bootstrap: str, producer: AIOKafkaProducer) -> None:
    (good,) = (await fresh_topics(kafka_bootstrap, ["batches.good"], partitions=1)).values()
    refused = "no such topic!"  # an invalid name: no metadata for it, ever
    records: list[OutgoingRecord] = [(b"1", good, b"k", []), (b"2", refused, b"k", []), (b"3", good, b"k", [])]
    acks = await batched_publisher(producer)(records)
    outcomes = await asyncio.gather(*acks, return_exceptions=True)
    assert [isinstance(o, Exception) for o in outcomes] == [False, True, False]
