"""The batch subscribers poll again at once after an empty poll (FastStream's own pause after one
held the records that came meanwhile for up to ``batch_timeout_ms`` more); only a poll that came
back empty early pauses, for the rest of its timeout, so that the consume loop never spins."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faststream.kafka.subscriber.usecase import BatchSubscriber

from service.entrypoints import broker as broker_module
from service.entrypoints.broker import PromptBatchSubscriber, TicketBroker, prompt

TIMEOUT_MS = 50


class Consumer:
    """getmany as aiokafka's: waits up to its timeout for records (``wait``), or returns at once."""

    def __init__(self, records: dict[Any, list[Any]], *, wait: bool) -> None:
        self.records, self.wait, self.calls = records, wait, []

    async def getmany(self, timeout_ms: int, max_records: int | None) -> dict[Any, list[Any]]:
        self.calls.append((timeout_ms, max_records))
        if self.wait:
            await asyncio.sleep(timeout_ms / 1000)
        return self.records


@pytest.fixture
def subscriber() -> Any:
    broker = TicketBroker("localhost:9092", apply_types=False)

    @broker.subscriber("t", batch=True, batch_timeout_ms=TIMEOUT_MS, max_records=7)
    async def handle(body: list[bytes]) -> None:  # pragma: no cover - never called
        return None

    (sub,) = broker.subscribers
    assert type(sub) is BatchSubscriber
    prompt(broker.subscribers)
    assert type(sub) is PromptBatchSubscriber
    return sub


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    taken: list[float] = []

    async def pause(seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr(broker_module, "_pause", pause)
    return taken


async def test_an_empty_poll_that_waited_its_timeout_is_followed_by_the_next_poll_at_once(
        subscriber: Any, pauses: list[float]) -> None:
    consumer = Consumer({}, wait=True)
    assert await subscriber.get_msg(consumer) == ()
    assert consumer.calls == [(TIMEOUT_MS, 7)]
    assert pauses == []


async def test_an_empty_poll_that_came_back_early_pauses_for_the_rest_of_the_timeout(
        subscriber: Any, pauses: list[float]) -> None:
    assert await subscriber.get_msg(Consumer({}, wait=False)) == ()
    assert len(pauses) == 1 and TIMEOUT_MS / 1000 * 0.5 < pauses[0] <= TIMEOUT_MS / 1000


async def test_records_of_every_partition_come_back_as_one_batch_without_a_pause(
        subscriber: Any, pauses: list[float]) -> None:
    got = await subscriber.get_msg(Consumer({"p0": ["a", "b"], "p1": ["c"]}, wait=False))
    assert got == ("a", "b", "c")
    assert pauses == []
