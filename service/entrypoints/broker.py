"""The Kafka broker of the service.

FastStream starts subscribers one after another, and each consumer-group join waits for a
rebalance (~5 s on the embedded broker), so three subscribers took ~15 s to start. Starting
them concurrently cuts that to one join.

It also owns a plain aiokafka producer, built from exactly the connection options FastStream's
own producer gets (bootstrap servers, security, request size): dead letters go through it, because
FastStream's publish turns headers into a dict and adds ``content-type`` and ``correlation_id``,
and a dead letter must carry the original headers exactly — duplicates, order, binary values.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

Headers = list[tuple[str, bytes]]


class TicketBroker(KafkaBroker):
    _raw: AIOKafkaProducer | None = None

    async def start(self) -> None:
        await self.connect()
        await asyncio.gather(*(subscriber.start() for subscriber in self.subscribers))
        for publisher in self.publishers:
            await publisher.start()
        self.running = True

    async def _connect(self) -> Any:
        connection = await super()._connect()
        if self._raw is None:
            producer = AIOKafkaProducer(**self._connection_kwargs)
            await producer.start()
            self._raw = producer
        return connection

    async def stop(self, *args: Any, **kwargs: Any) -> None:
        try:
            await super().stop(*args, **kwargs)
        finally:
            producer, self._raw = self._raw, None
            if producer is not None:
                await producer.stop()

    async def send_raw(self, topic: str, value: bytes | None, *, key: bytes | None, headers: Headers,
                       partition: int | None = None) -> asyncio.Future[Any]:
        """Enqueue one record exactly as given (no codec, no added headers); await the result for the ack."""
        if self._raw is None:
            raise RuntimeError("the broker is not connected")
        return await self._raw.send(topic, value, key=key, headers=headers, partition=partition)
