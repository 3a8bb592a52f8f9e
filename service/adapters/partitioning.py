"""Kafka's key → partition mapping (murmur2, as the Java client and librdkafka's
``murmur2_random`` compute it) with the key hashes remembered.

aiokafka's ``DefaultPartitioner`` hashes every key in pure Python (~10 µs for a 36-byte ticket
id); the relay sends every event and result keyed by its ticket id, about ten messages per
ticket in quick succession, so remembering the last keys' hashes saves most of that work. The
partition is exactly the one the default partitioner picks (tests/unit/test_partitioning.py).
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from aiokafka.partitioner import murmur2

#: Ticket ids hashed recently (a few MB at most).
CACHED_KEYS = 65_536

_hash = lru_cache(maxsize=CACHED_KEYS)(lambda key: murmur2(key) & 0x7FFFFFFF)


def partition_for(key: bytes | None, all_partitions: list[Any], available: list[Any]) -> Any:
    """An aiokafka ``partitioner``: same choice as ``DefaultPartitioner``, hashes cached."""
    if key is None:
        return random.choice(available or all_partitions)
    return all_partitions[_hash(key) % len(all_partitions)]
