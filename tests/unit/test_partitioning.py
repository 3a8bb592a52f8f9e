"""The relay's partitioner picks exactly the partition aiokafka's default one (Kafka's murmur2) does."""

from __future__ import annotations

import uuid

from aiokafka.partitioner import DefaultPartitioner

from service.adapters.partitioning import partition_for


def test_every_key_lands_where_the_default_partitioner_puts_it_again_and_again() -> None:
    default = DefaultPartitioner()
    for count in (1, 3, 8, 12):
        partitions = list(range(count))
        for _ in range(500):
            key = str(uuid.uuid4()).encode()
            expected = default(key, partitions, partitions)
            assert partition_for(key, partitions, partitions) == expected
            assert partition_for(key, partitions, partitions[:1]) == expected  # the key decides, not availability


#: murmur2 of these keys, from Apache Kafka's own UtilsTest.testMurmur2 (Java, signed 32-bit).
KAFKA_VECTORS = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
                 b"a-little-bit-longer-string": -1486304829,
                 b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971, b"abc": 479470107}


def test_the_partition_is_the_java_clients_for_kafkas_own_test_vectors() -> None:
    partitions = list(range(1_000_003))  # a prime: every bit of the hash matters
    for key, java_hash in KAFKA_VECTORS.items():
        # Utils.toPositive(Utils.murmur2(key)) % numPartitions
        assert partition_for(key, partitions, partitions) == (java_hash & 0x7FFFFFFF) % len(partitions)


def test_keyless_messages_go_to_an_available_partition() -> None:
    assert partition_for(None, [0, 1, 2], [2]) == 2
    assert partition_for(None, [5], []) == 5
