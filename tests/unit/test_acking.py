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

