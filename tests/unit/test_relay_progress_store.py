"""The relay stores its progress at most every STORE_EVERY_S while rows flow, and what is pending
when it goes idle or leaves (service/adapters/relay.py, _ProgressStore)."""

from __future__ import annotations

import asyncio
from typing import Any

from service.adapters.relay import STORE_EVERY_S, OutboxProgress, _ProgressStore


class Conn:
    def __init__(self, *, broken: bool = False, silent: bool = False) -> None:
        self.stored: list[tuple[Any, ...]] = []
        self.broken, self.silent = broken, silent

    async def execute(self, sql: str, *args: Any) -> None:
        if self.broken:
            raise ConnectionResetError("gone")
        if self.silent:  # a database that went away without a word
            await asyncio.Event().wait()
        self.stored.append(args)

    def is_closed(self) -> bool:
        return False


async def test_rounds_within_the_interval_share_one_store_and_an_idle_wait_ends_when_it_is_due() -> None:
    now = [100.0]
    events, results = OutboxProgress(), OutboxProgress()
    conn = Conn()
    store = _ProgressStore(conn, events, results, clock=lambda: now[0])  # type: ignore[arg-type]
    assert store.wait(5.0) == 5.0 and not store.pending  # nothing to store: a whole poll

    events.max_seen = 3
    store.changed()
    now[0] += STORE_EVERY_S / 4
    await store.if_due()
    assert conn.stored == [] and store.pending
    assert abs(store.wait(5.0) - STORE_EVERY_S * 3 / 4) < 1e-9  # wake up when it is due, not after a poll

    events.max_seen = 7
    store.changed()
    now[0] += STORE_EVERY_S
    await store.if_due()
    assert conn.stored == [(7, [], 0, [])] and not store.pending  # one store for both rounds, the latest progress

    results.max_seen = 2
    store.changed()
    await store.last()  # leaving: what is pending is stored
    assert conn.stored[-1] == (7, [], 2, []) and not store.pending
    await store.last()
    assert len(conn.stored) == 2  # nothing pending: nothing sent


async def test_leaving_on_a_broken_connection_does_not_raise() -> None:
    store = _ProgressStore(Conn(broken=True), OutboxProgress(), OutboxProgress())  # type: ignore[arg-type]
    store.changed()
    await store.last()
    assert store.pending  # not stored: the next leader starts from the older progress and sends again


async def test_leaving_does_not_wait_for_a_database_that_does_not_answer() -> None:
    store = _ProgressStore(Conn(silent=True), OutboxProgress(), OutboxProgress())  # type: ignore[arg-type]
    store.changed()
    await asyncio.wait_for(store.last(timeout_s=0.05), 5)
    assert store.pending
