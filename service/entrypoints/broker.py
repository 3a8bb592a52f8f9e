"""The Kafka broker of the service.

FastStream starts subscribers one after another, and each consumer-group join waits for a
rebalance (~5 s on the embedded broker), so three subscribers took ~15 s to start. Starting
them concurrently cuts that to one join.

Its batch subscribers poll without FastStream's pause after an empty poll
(:class:`PromptBatchSubscriber`): ``getmany`` has already waited ``batch_timeout_ms`` for records
by then, and the pause held the records that arrived during it for up to another
``batch_timeout_ms`` — at a light load, when most polls are empty, most records.

It also owns a plain aiokafka producer, built from exactly the connection options FastStream's
own producer gets (bootstrap servers, security, request size): dead letters go through it, because
FastStream's publish turns headers into a dict and adds ``content-type`` and ``correlation_id``,
and a dead letter must carry the original headers exactly — duplicates, order, binary values.
"""

from __future__ import annotations

import asyncio
from itertools import chain
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber

Headers = list[tuple[str, bytes]]
_pause = asyncio.sleep


class PromptBatchSubscriber(BatchSubscriber):
    """FastStream's batch subscriber, polling again at once after an empty poll.

    FastStream (0.7) sleeps ``batch_timeout_ms`` after every empty ``getmany`` — which itself
    waited that long for records: records arriving meanwhile waited for the sleep to end (~+5 ms
    on average, +10 at worst, per hop at the default 10 ms, with nothing gained: the fetches to
    the broker go on in aiokafka's fetcher during the sleep all the same). Only a poll that came
    back empty *early* (aiokafka returns at once when the consumer is closing) pauses for the
    rest of the timeout, so that the loop never spins."""

    __slots__ = ()

    async def get_msg(self, consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord[Any, Any], ...]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        messages = await consumer.getmany(timeout_ms=self.batch_timeout_ms, max_records=self.max_records)
        if not messages:
            rest = self.batch_timeout_ms / 1000 - (loop.time() - started)
            if rest > 0:
                await _pause(rest)
            return ()
        return tuple(chain(*messages.values()))


def prompt(subscribers: Any) -> None:
    """Make FastStream's batch subscribers :class:`PromptBatchSubscriber` (same slots, one method
    overridden: the class can be swapped in place; FastStream has no option to pick it)."""
    for subscriber in subscribers:
        if type(subscriber) is BatchSubscriber:
            subscriber.__class__ = PromptBatchSubscriber


class TicketBroker(KafkaBroker):
    _raw: AIOKafkaProducer | None = None

    async def start(self) -> None:
        prompt(self.subscribers)
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
