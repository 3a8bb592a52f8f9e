"""The relay's publisher: a round's records handed to aiokafka as one record batch per partition.

The relay publishes with a plain aiokafka producer of its own (``service.app.relay_producer``): it
sends thousands of ready-made JSON values per second, where FastStream's per-message publish
machinery (codec, correlation ids, middlewares) only costs CPU; it makes its headers and spans itself.

``producer.send`` per message costs aiokafka a metadata check, a partitioner call, a future and
its completion callback for every record (the relay's ~12 % of the service's CPU in a drain).
Here the records of a round are appended, in order, to one ``BatchBuilder`` per (topic,
partition) — the partition the default partitioner would pick (:func:`.partitioning.partition_for`,
keyed by ticket id) — and each builder goes out with ``send_batch``: one future per partition.
Order per partition is the order of the records (per ticket, ``seq`` order), as with ``send``:
a second builder for the same partition (the first full at ``max_batch_size``) is queued behind
it by aiokafka. A topic whose metadata cannot be had (a ``reply_to`` topic the broker refuses)
fails its own records only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from .message_headers import KafkaHeaders
from .partitioning import partition_for

#: (value, topic, key, headers): one record as the relay stores and sends it.
OutgoingRecord = tuple[bytes, str, bytes | None, KafkaHeaders]
#: Enqueue records in order; one awaitable acknowledgement per record, in the same order.
PublishMany = Callable[[Sequence[OutgoingRecord]], Awaitable[list[Awaitable[Any]]]]


def batched_publisher(producer: AIOKafkaProducer) -> PublishMany:
    async def publish(records: Sequence[OutgoingRecord]) -> list[Awaitable[Any]]:
        partitions: dict[str, list[int] | BaseException] = {}
        for topic in dict.fromkeys(r[1] for r in records):
            try:
                partitions[topic] = sorted(await producer.partitions_for(topic))
            except Exception as error:  # no such topic, or no metadata for it: its records fail
                partitions[topic] = error
        builders: dict[tuple[str, int], list[Any]] = {}  # (topic, partition) → builders, the last open
        where: list[tuple[str, int, int] | BaseException] = []
        for value, topic, key, headers in records:
            known = partitions[topic]
            if isinstance(known, BaseException):
                where.append(known)
                continue
            tp = (topic, partition_for(key, known, known))
            queue = builders.setdefault(tp, [producer.create_batch()])
            if queue[-1].append(key=key, value=value, timestamp=None, headers=headers) is None:
                queue.append(producer.create_batch())  # full: the record starts the next batch
                queue[-1].append(key=key, value=value, timestamp=None, headers=headers)
            where.append((topic, tp[1], len(queue) - 1))
        sent: dict[tuple[str, int, int], Awaitable[Any]] = {}
        for (topic, partition), queue in builders.items():
            for n, builder in enumerate(queue):
                sent[(topic, partition, n)] = await producer.send_batch(builder, topic, partition=partition)
        return [_failed(w) if isinstance(w, BaseException) else sent[w] for w in where]

    return publish


def _failed(error: BaseException) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future
