"""The Kafka broker of the service.

FastStream starts subscribers one after another, and each consumer-group join waits for a
rebalance (~5 s on the embedded broker), so three subscribers took ~15 s to start. Starting
them concurrently cuts that to one join.
"""

from __future__ import annotations

import asyncio

from faststream.kafka import KafkaBroker


class TicketBroker(KafkaBroker):
    async def start(self) -> None:
        await self.connect()
        await asyncio.gather(*(subscriber.start() for subscriber in self.subscribers))
        for publisher in self.publishers:
            await publisher.start()
        self.running = True
