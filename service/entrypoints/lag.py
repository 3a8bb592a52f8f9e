"""Consumer lag that tells the truth, rebalances and refused offset commits.

Lag of a partition = its high-water mark − the offset this instance has committed (handled) up to.

* The high-water mark comes from **fetch responses** (aiokafka's ``highwater(tp)``), never from
  ``end_offsets()`` (a ListOffsets request, which under-reports on the embedded broker). The service's
  own consumers fetch only while they are consuming: a consumer busy with (or stuck on) a batch has the
  next one buffered and fetches nothing, so its high-water mark would freeze exactly when lag grows.
  A probe consumer (no group, nothing committed) therefore keeps fetching the assigned partitions at
  their high-water mark — empty fetches, which return the current mark — and the larger of the two
  marks counts.
* The committed side is tracked here: each acknowledged batch moves its partitions forward; a
  partition seen for the first time starts at the group's committed offset (one request).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from service.logging import get_logger
from service.metrics import Metrics

log = get_logger(__name__)


class Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """Counts assignments per consumer group and forgets the progress of revoked partitions."""

    def __init__(self, group: str, metrics: Metrics, progress: Progress) -> None:
        self._group, self._metrics, self._progress = group, metrics, progress

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._progress.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._metrics.rebalances.labels(self._group).inc()


class Progress:
    """Per partition: the next offset to handle, as committed by this instance."""

    def __init__(self) -> None:
        self.next: dict[TopicPartition, int] = {}

    def committed(self, records: Iterable[Any]) -> None:
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            if record.offset + 1 > self.next.get(tp, -1):
                self.next[tp] = record.offset + 1

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.next.pop(tp, None)


class LagMonitor:
    def __init__(self, bootstrap: str, consumers: dict[str, Any], progress: Progress, metrics: Metrics,
                 **client: Any) -> None:
        self._consumers = consumers  # group → AIOKafkaConsumer (FastStream's, once started)
        self._progress = progress
        self._metrics = metrics
        self._probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                       fetch_max_wait_ms=500, max_partition_fetch_bytes=1024,
                                       client_id="ticket-service-lag-probe", **client)
        self._started = False
        self._seeked: dict[TopicPartition, int] = {}
        self._reported: set[tuple[str, str, str]] = set()
        self.last: dict[str, int] | None = None

    async def start(self) -> None:
        await self._probe.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._probe.stop()

    async def measure(self) -> dict[str, int]:
        """Lag per assigned partition (``"topic:partition"`` → records), also set as gauges."""
        assigned: dict[TopicPartition, tuple[str, Any]] = {}
        for group, consumer in self._consumers.items():
            if consumer is not None:
                for tp in consumer.assignment():
                    assigned[tp] = (group, consumer)
        self._follow(assigned)
        lag: dict[str, int] = {}
        labels_now = set()
        for tp, (group, consumer) in sorted(assigned.items()):
            marks = [m for m in (consumer.highwater(tp), self._probe_mark(tp)) if m is not None]
            if not marks:
                continue  # nothing fetched yet: unknown, not zero
            if tp not in self._progress.next:
                committed = await consumer.committed(tp)
                self._progress.next.setdefault(tp, committed or 0)
            value = max(0, max(marks) - self._progress.next[tp])
            lag[f"{tp.topic}:{tp.partition}"] = value
            labels = (group, tp.topic, str(tp.partition))
            labels_now.add(labels)
            self._metrics.consumer_lag.labels(*labels).set(value)
        for gone in self._reported - labels_now:
            self._metrics.consumer_lag.remove(*gone)
        self._reported = labels_now
        self.last = lag
        return lag

    def _follow(self, assigned: dict[TopicPartition, Any]) -> None:
        """Probe exactly the assigned partitions, each at its known high-water mark."""
        if not self._started:
            return
        wanted = set(assigned)
        if wanted != set(self._seeked):
            self._probe.assign(sorted(wanted))
            self._seeked = {}
            for tp in wanted:
                start = assigned[tp][1].highwater(tp)
                self._seek(tp, start if start is not None else self._progress.next.get(tp, 0))
            return
        for tp in wanted:  # the mark moved on: skip what the probe buffered and fetch at the new mark
            mark = self._probe.highwater(tp)
            if mark is not None and mark > self._seeked[tp]:
                self._seek(tp, mark)

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        self._probe.seek(tp, offset)
        self._seeked[tp] = offset

    def _probe_mark(self, tp: TopicPartition) -> int | None:
        return self._probe.highwater(tp) if self._started and tp in self._seeked else None


async def monitor_loop(monitor: LagMonitor, interval_s: float, *extra: Any) -> None:
    """Measure every ``interval_s``; ``extra`` are coroutine functions run alongside (outbox age).
    A measurement that fails (database down) says so once, not at every interval."""
    failing: set[int] = set()
    while True:
        for number, measure in enumerate((monitor.measure, *extra)):
            try:
                await measure()
                failing.discard(number)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if number not in failing:
                    failing.add(number)
                    log.warning("measurement failed; retrying quietly", what="lag" if number == 0 else "outbox",
                                error=type(error).__name__)
        await asyncio.sleep(interval_s)
