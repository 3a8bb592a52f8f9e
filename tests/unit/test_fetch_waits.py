"""Idle subscribers fetch with the long wait; their next batch brings back the short one."""

from __future__ import annotations

from types import SimpleNamespace

from service.entrypoints.fetch_waits import IDLE_AFTER_S, FetchWaits


def test_an_idle_subscriber_gets_the_long_wait_and_its_next_batch_the_short_one() -> None:
    now = [0.0]
    fetcher = SimpleNamespace(_fetch_max_wait_ms=10)
    busy = SimpleNamespace(consumer=SimpleNamespace(_fetcher=fetcher), batch_timeout_ms=10)
    slow = SimpleNamespace(consumer=SimpleNamespace(_fetcher=SimpleNamespace(_fetch_max_wait_ms=500)),
                           batch_timeout_ms=500)  # the user-directory subscriber: left alone
    waits = FetchWaits([busy, slow], busy_ms=10, idle_ms=250, clock=lambda: now[0])
    # no batch yet: idle from the start (a restart under a backlog gets records in its first fetch)
    assert (busy.batch_timeout_ms, fetcher._fetch_max_wait_ms) == (250, 250) and waits.idle(busy.consumer)
    waits.saw_batch(busy.consumer)
    assert (busy.batch_timeout_ms, fetcher._fetch_max_wait_ms, waits.woken) == (10, 10, 1)

    now[0] = IDLE_AFTER_S / 2
    waits.check()
    assert (busy.batch_timeout_ms, fetcher._fetch_max_wait_ms) == (10, 10)
    now[0] = IDLE_AFTER_S
    waits.check()
    assert (busy.batch_timeout_ms, fetcher._fetch_max_wait_ms) == (250, 250) and waits.idle(busy.consumer)
    assert (slow.batch_timeout_ms, slow.consumer._fetcher._fetch_max_wait_ms) == (500, 500)

    waits.saw_batch(busy.consumer)
    assert (busy.batch_timeout_ms, fetcher._fetch_max_wait_ms, waits.woken) == (10, 10, 2)
    now[0] += IDLE_AFTER_S / 2
    waits.check()
    assert not waits.idle(busy.consumer)  # a second counts from the last batch


def test_an_idle_wait_of_zero_never_switches() -> None:
    fetcher = SimpleNamespace(_fetch_max_wait_ms=10)
    busy = SimpleNamespace(consumer=SimpleNamespace(_fetcher=fetcher), batch_timeout_ms=10)
    waits = FetchWaits([busy], busy_ms=10, idle_ms=0, clock=lambda: 100.0)
    waits.check()
    assert (busy.batch_timeout_ms, fetcher._fetch_max_wait_ms) == (10, 10)
