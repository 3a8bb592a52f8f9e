"""The relay in a child process (`tickets run` with TICKETS_RELAY_PROCESS=true), on real PostgreSQL and a real broker:
it publishes and marks what commits, its reports reach the parent, a child that dies is replaced,
and stopping the parent — or losing it — ends the child and frees the relay's lock."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from ticket_contracts import CreateTicket, new_id

from service.adapters.relay import RELAY_LOCK_KEY
from service.app import _asyncpg_dsn
from service.handlers.bus import handle_batch
from service.adapters.unit_of_work import SqlUnitOfWork
from service.relay_process import RelayProcess, child_main
from service.settings import Settings, load_settings
from tests.support.waiting import eventually

from .uow_helpers import customer, incoming, migrated_engine, unpublished


class Recorded:
    """The parent's side of the reports, recorded."""

    def __init__(self) -> None:
        self.history: list[bool] = []
        self.events = self.results = 0

    def active(self, active: bool) -> None:
        self.history.append(active)

    def published(self, events: int, results: int, seconds: float) -> None:
        assert seconds >= 0
        self.events += events
        self.results += results

    def backlog(self, rows: int) -> None:
        pass


@pytest.fixture
async def engine(database_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(database_server_url) as engine:
        yield engine


@pytest.fixture
def settings(engine: AsyncEngine, kafka_bootstrap: str) -> Settings:
    return load_settings(database_url=engine.url.render_as_string(hide_password=False),
                         kafka_bootstrap=kafka_bootstrap, relay_poll_interval_s=0.2, instance_id="relay-process-test")


async def _create_tickets(engine: AsyncEngine, n: int) -> None:
    commands = [CreateTicket(actor=customer(), payload={"ticket_id": new_id(), "title": "T", "description": "D"})
                for _ in range(n)]
    await handle_batch([incoming(c) for c in commands], SqlUnitOfWork(engine))


async def _unpublished(engine: AsyncEngine) -> int:
    return sum(await unpublished(engine))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not alive either.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


async def _lock_free(engine: AsyncEngine) -> bool:
    conn = await asyncpg.connect(_asyncpg_dsn(engine.url.render_as_string(hide_password=False)))
    try:
        return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY))
    finally:
        await conn.close()


async def test_child_publishes_and_reports_then_stops_with_its_parent_and_frees_the_lock(
    engine: AsyncEngine, settings: Settings,
) -> None:
    reports = Recorded()
    supervisor = RelayProcess(settings, reports, restart_max_s=0.5)
    task = asyncio.create_task(supervisor.run())
    try:
        await _create_tickets(engine, 3)
        await eventually(lambda: reports.history == [True], timeout=60, what="the child leads and says so")
        await eventually(lambda: reports.events == 3 and reports.results == 3, timeout=30,
                         what="the child reports the rows it published")
        # the stored progress follows within STORE_EVERY_S (the relay stores it at most that often)
        await eventually(lambda: _nothing_unpublished(engine), timeout=30, what="the published rows stored as such")
        assert not await _lock_free(engine), "the child holds the relay's lock"
        pid = supervisor.pid
        assert pid is not None and pid != os.getpid() and _alive(pid)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not _alive(pid), "the child exits when the parent stops it"
    assert reports.history[-1] is False, "the parent knows it no longer relays"
    assert await _lock_free(engine), "the lock went with the child"


async def test_a_child_that_dies_is_replaced_and_the_new_one_relays(engine: AsyncEngine, settings: Settings) -> None:
    reports = Recorded()
    supervisor = RelayProcess(settings, reports, restart_max_s=0.5)
    task = asyncio.create_task(supervisor.run())
    try:
        await eventually(lambda: reports.history == [True], timeout=60, what="the first child leads")
        first = supervisor.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: reports.history == [True, False, True], timeout=60,
                         what="the parent notices, starts another child, which leads")
        assert supervisor.pid != first and not _alive(first)
        await _create_tickets(engine, 2)
        await eventually(lambda: reports.events == 2, timeout=30, what="the new child publishes")
        assert await eventually(lambda: _nothing_unpublished(engine), timeout=30, what="rows marked")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _nothing_unpublished(engine: AsyncEngine) -> bool:
    return await _unpublished(engine) == 0


async def test_a_child_whose_parent_is_gone_stops_and_frees_the_lock(settings: Settings, engine: AsyncEngine) -> None:
    """The parent killed (SIGKILL: no shutdown code runs) shows to the child as its pipe ending."""
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(target=child_main, args=(settings, theirs), daemon=True)
    child.start()
    theirs.close()
    try:
        await eventually(ours.poll, timeout=60, what="the child's first report")
        assert ours.recv() == ("active", (True,)), "it leads"
        ours.close()  # what the kernel does for a parent that is killed
        await asyncio.to_thread(child.join, 30)
        assert child.exitcode == 0, "the child exits by itself, cleanly"
    finally:
        if child.is_alive():
            child.kill()
    assert await _lock_free(engine)


async def test_a_spawn_that_fails_is_tried_again(engine: AsyncEngine, settings: Settings,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    spawned = multiprocessing.get_context("spawn").Process
    real_start = spawned.start
    failures = [OSError("out of file descriptors")]

    def start(process: multiprocessing.process.BaseProcess) -> None:
        if failures:
            raise failures.pop()
        real_start(process)

    monkeypatch.setattr(spawned, "start", start)
    reports = Recorded()
    task = asyncio.create_task(RelayProcess(settings, reports, restart_max_s=0.5).run())
    try:
        await eventually(lambda: reports.history == [False, True], timeout=60,
                         what="after the failed spawn, a child that leads")
        assert not failures
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
