"""Short fetch waits while records flow, long ones while a subscriber is idle.

Low latency needs a short fetch wait (``TICKETS_FETCH_MAX_WAIT_MS``, 10 ms): the embedded broker
answers an empty fetch only when the wait is over, and aiokafka sends the next fetch at once, so an
idle consumer costs about a hundred fetch round trips a second, and FastStream's batch loop wakes
every ``batch_timeout_ms`` on top. With nothing to read for ``IDLE_AFTER_S`` (10 s: longer than the
pauses of bursty traffic, much shorter than a quiet hour) a subscriber switches
to ``TICKETS_IDLE_FETCH_WAIT_MS`` for both; the first batch it gets switches it back. The price: the
first command or query after such a pause may wait up to twice that long, once (docs/operations.md).

A subscriber starts idle: one that has not had a batch since the instance started is as quiet as
one that has had none for ten seconds. An instance restarted under a backlog of commands gets them
in its first fetch (a fetch with records is answered at once) and switches that subscriber to the
short wait; its query subscriber, with nothing to read, costs the broker a tenth of the fetches. On
the embedded broker an empty 10 ms fetch loop costs it ~0.05–0.09 cores per consumer — for the
first ten seconds of every start, spent exactly while a backlog is being drained (bench/README.md).

aiokafka reads the wait from its fetcher for every request it builds, and FastStream reads its
batch timeout on every poll, so changing the two attributes takes effect on the next poll; both are
private attributes of those libraries (pinned in requirements.lock), checked by
tests/integration/test_fetch_waits.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

IDLE_AFTER_S = 10.0


class FetchWaits:
    def __init__(self, subscribers: Iterable[Any], *, busy_ms: int, idle_ms: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``subscribers``: FastStream batch subscribers (started) whose wait is ``busy_ms``; others are left alone."""
        self._clock = clock
        self._idle_ms = idle_ms
        self._enabled = idle_ms > busy_ms
        self._subscribers = {id(s.consumer): s for s in subscribers
                             if getattr(s, "consumer", None) is not None and getattr(s, "batch_timeout_ms", None) == busy_ms}
        self._last = dict.fromkeys(self._subscribers, clock() - IDLE_AFTER_S)  # never had a batch: idle
        self._idle: set[int] = set()
        #: How many times a batch brought a subscriber back from the idle wait.
        self.woken = 0
        #: What each subscriber had before the first switch: (batch timeout, fetch wait).
        self._original = {key: (s.batch_timeout_ms, _fetch_wait(s)) for key, s in self._subscribers.items()}
        self.check()

    def saw_batch(self, consumer: Any) -> None:
        """A batch arrived on ``consumer``: back to the short wait if it was idle."""
        key = id(consumer)
        if key in self._last:
            self._last[key] = self._clock()
            if key in self._idle:
                self._idle.discard(key)
                self.woken += 1
                _set_wait(self._subscribers[key], *self._original[key])

    def check(self) -> None:
        """Switch every subscriber with nothing read for IDLE_AFTER_S to the long wait."""
        if not self._enabled:
            return
        now = self._clock()
        for key, subscriber in self._subscribers.items():
            if key not in self._idle and now - self._last[key] >= IDLE_AFTER_S:
                self._idle.add(key)
                _set_wait(subscriber, self._idle_ms, self._idle_ms)

    def idle(self, consumer: Any) -> bool:
        return id(consumer) in self._idle

    async def run(self, interval_s: float = IDLE_AFTER_S / 4) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.check()


def _fetch_wait(subscriber: Any) -> int | None:
    fetcher = getattr(subscriber.consumer, "_fetcher", None)
    return getattr(fetcher, "_fetch_max_wait_ms", None)


def _set_wait(subscriber: Any, batch_timeout_ms: int, fetch_wait_ms: int | None) -> None:
    subscriber.batch_timeout_ms = batch_timeout_ms  # FastStream's getmany timeout and empty-poll pause
    fetcher = getattr(subscriber.consumer, "_fetcher", None)  # aiokafka's FetchRequest max wait
    if fetcher is not None and fetch_wait_ms is not None:
        fetcher._fetch_max_wait_ms = fetch_wait_ms
