"""Acknowledging a batch: a commit refused during a rebalance is one warning and a metric, never an
error; a committed batch moves the consumer progress that lag is measured from."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka.errors import CommitFailedError
from structlog.testing import capture_logs

from service.entrypoints.acking import ack_after
from service.entrypoints.lag import Progress
from service.metrics import Metrics


class Message:
    def __init__(self, fail: bool) -> None:
        self.fail, self.acked = fail, False
        self.consumer = SimpleNamespace(_group_id="tickets.commands")
        self.raw_message = (SimpleNamespace(topic="t", partition=0, offset=4),
                            SimpleNamespace(topic="t", partition=0, offset=5))

    async def ack(self) -> None:
        if self.fail:
            raise CommitFailedError("the group has rebalanced")
        self.acked = True

    async def nack(self) -> None:  # pragma: no cover - not reached
        raise AssertionError


def runtime(message: Message) -> Any:
    return SimpleNamespace(broker=SimpleNamespace(context=SimpleNamespace(get_local=lambda name: message)),
                           metrics=Metrics(), progress=Progress(), settings=SimpleNamespace(retry_max_backoff_s=0), fetch_waits=None)


async def _work() -> None:
    return None


async def test_a_refused_commit_is_one_warning_and_a_metric() -> None:
    message = Message(fail=True)
    rt = runtime(message)
    with capture_logs() as logs:
        await ack_after(rt, _work, what="commands")
    assert [(e["log_level"], e["error"]) for e in logs] == [("warning", "CommitFailedError")]
    assert "exc_info" not in logs[0]
    assert rt.metrics.commit_failures.labels("tickets.commands")._value.get() == 1
    assert rt.progress.next == {}  # not committed: lag keeps counting these records


async def test_a_committed_batch_moves_the_progress() -> None:
    message = Message(fail=False)
    rt = runtime(message)
    await ack_after(rt, _work, what="commands")
    assert message.acked
    assert {(tp.topic, tp.partition): n for tp, n in rt.progress.next.items()} == {("t", 0): 6}


def test_an_idle_subscriber_gets_the_long_wait_and_its_next_batch_the_short_one() -> None:
    from service.entrypoints.fetch_waits import IDLE_AFTER_S, FetchWaits

    now = [0.0]
    fetcher = SimpleNamespace(_fetch_max_wait_ms=10)
    busy = SimpleNamespace(consumer=SimpleNamespace(_fetcher=fetcher), batch_timeout_ms=10)
    slow = SimpleNamespace(consumer=SimpleNamespace(_fetcher=SimpleNamespace(_fetch_max_wait_ms=500)),
                           batch_timeout_ms=500)  # the user-directory subscriber: left alone
    waits = FetchWaits([busy, slow], busy_ms=10, idle_ms=250, clock=lambda: now[0])

    now[0] = IDLE_AFTER_S / 2
    waits.check()
    assert (busy.batch_timeout_ms, fetcher._fetch_max_wait_ms) == (10, 10)
    now[0] = IDLE_AFTER_S
    waits.check()
    assert (busy.batch_timeout_ms, fetcher._fetch_max_wait_ms) == (250, 250) and waits.idle(busy.consumer)
    assert (slow.batch_timeout_ms, slow.consumer._fetcher._fetch_max_wait_ms) == (500, 500)

    waits.saw_batch(busy.consumer)
    assert (busy.batch_timeout_ms, fetcher._fetch_max_wait_ms, waits.woken) == (10, 10, 1)
    now[0] += IDLE_AFTER_S / 2
    waits.check()
    assert not waits.idle(busy.consumer)  # a second counts from the last batch


def test_an_idle_wait_of_zero_never_switches() -> None:
    from service.entrypoints.fetch_waits import FetchWaits

    fetcher = SimpleNamespace(_fetch_max_wait_ms=10)
    busy = SimpleNamespace(consumer=SimpleNamespace(_fetcher=fetcher), batch_timeout_ms=10)
    waits = FetchWaits([busy], busy_ms=10, idle_ms=0, clock=lambda: 100.0)
    waits.check()
    assert (busy.batch_timeout_ms, fetcher._fetch_max_wait_ms) == (10, 10)
