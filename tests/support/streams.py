"""Read what the service publishes, from the beginning of a topic, without a consumer group."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from .waiting import eventually


class TopicReader:
    """Collects every record of some topics in the background; query what arrived so far."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self.records: list[Any] = []
        self.by_key: dict[bytes | None, list[Any]] = defaultdict(list)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> TopicReader:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, enable_auto_commit=False,
                                          auto_offset_reset="earliest", fetch_max_wait_ms=10)
        await self._consumer.start()
        partitions = [TopicPartition(t, p) for t in self._topics
                      for p in (self._consumer.partitions_for_topic(t) or await self._partitions(t))]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._read())
        return self

    async def _partitions(self, topic: str) -> set[int]:
        await self._consumer.client.force_metadata_update()  # type: ignore[union-attr]
        return self._consumer.partitions_for_topic(topic) or set()  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            for records in (await self._consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    self.records.append(record)
                    self.by_key[record.key].append(record)

    def json_for(self, key: uuid.UUID | str, topic: str | None = None) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in self.by_key.get(str(key).encode(), [])
                if topic is None or r.topic == topic]

    async def wait_for(self, key: uuid.UUID | str, count: int, *, topic: str | None = None,
                       timeout: float = 30.0) -> list[dict[str, Any]]:
        """At least ``count`` records with this key (and topic) — returns all of them."""
        return await eventually(lambda: (found := self.json_for(key, topic)) and len(found) >= count and found,
                                timeout=timeout, what=f"{count} records keyed {key}")
