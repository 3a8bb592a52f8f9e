"""The outbox relay in a process of its own, started and supervised by `tickets run`.

The command loop is one thread. On it, the relay's own Python — reading the rows back, their
headers, one producer send per message, the marks — ran between the batches: ~5–6 ms of every
~62 ms batch of a drain (bench/README.md). In a child process it runs on another core, and the
command loop only consumes, decides and commits.

Nothing else about the relay changes: the child runs the same :class:`~service.adapters.relay.OutboxRelay`
with its own producer and its own PostgreSQL session, which holds the advisory lock, so exactly one
instance relays and another takes over when it goes.

Parent and child share one pipe (a socket pair). The child writes its reports on it (leadership,
each round's rows and duration, the backlog), which the parent applies to its own metrics and
health, so `/metrics`, `/readyz` and the heartbeat look as before. The parent never writes: the
child stops when the pipe ends, which is when the parent stops it, stops itself, or is killed
(SIGKILL included) — no orphan goes on relaying. A child that exits unexpectedly is started again,
backing off up to ``restart_max_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from service.adapters.relay import RelayReports
from service.logging import get_logger
from service.settings import Settings

log = get_logger(__name__)
#: A child that ran this long before exiting was not failing at start: its restart does not back off.
_STABLE_S = 30.0
_STOP_WAIT_S = 5.0


class RelayProcess:
    """The parent's side: starts the child, applies its reports, restarts it, stops it when cancelled."""

    def __init__(self, settings: Settings, reports: RelayReports, *, restart_max_s: float) -> None:
        self._settings = settings
        self._reports = reports
        self._restart_max = restart_max_s
        self.pid: int | None = None

    async def run(self) -> None:
        """Forever: run a child until its pipe ends, then start another (backing off). Cancelled:
        ends the pipe and waits a little for the child to go."""
        loop = asyncio.get_running_loop()
        delay = 0.2
        while True:
            started = loop.time()
            ours, theirs = multiprocessing.Pipe()
            child = multiprocessing.get_context("spawn").Process(
                target=child_main, args=(self._settings, theirs), name="tickets-relay", daemon=True)
            try:
                child.start()
                self.pid = child.pid
                log.info("relay process started", pid=child.pid)
                theirs.close()  # the child holds its end now: the pipe ends when the child does
                await self._follow(ours)
            except Exception as error:  # e.g. the spawn failed (no memory, no file descriptors): try again
                log.warning("relay process could not run", error=type(error).__name__)
            finally:
                ours.close()
                theirs.close()
                self._reports.active(False)
                if child.pid is not None:
                    await _gone(child, _STOP_WAIT_S)
            delay = 0.2 if loop.time() - started > _STABLE_S else min(delay * 2, self._restart_max)
            log.warning("relay process exited, starting another", exit_code=child.exitcode, retry_in_s=delay)
            await asyncio.sleep(delay)

    async def _follow(self, conn: Connection) -> None:
        """Apply the child's reports until its end of the pipe closes."""
        loop = asyncio.get_running_loop()
        ended = loop.create_future()

        def readable() -> None:
            try:
                while conn.poll():
                    name, args = conn.recv()
                    if name not in _REPORTS:
                        raise ValueError(name)
                    getattr(self._reports, name)(*args)
            except Exception as error:  # the pipe ended (EOFError, OSError), or what came is not a report
                if not isinstance(error, (EOFError, OSError)):
                    log.warning("relay process sent something unreadable", error=type(error).__name__)
                if not ended.done():
                    ended.set_result(None)

        loop.add_reader(conn.fileno(), readable)
        try:
            await ended
        finally:
            loop.remove_reader(conn.fileno())


#: What a child may report: only these methods are called, whatever comes down the pipe.
_REPORTS = frozenset({"active", "published", "backlog"})


async def _gone(child: BaseProcess, timeout_s: float) -> None:
    """Wait for ``child`` to exit, then SIGTERM it, then SIGKILL it; reap it."""
    for last_resort in (child.terminate, child.kill):
        if await _exited(child, timeout_s):
            break
        last_resort()
    else:
        if not await _exited(child, timeout_s):
            log.warning("relay process did not exit", pid=child.pid)
            return
    # Reap it: its end of the sentinel closes as it exits, a moment before it can be waited for.
    for _ in range(100):
        child.join(0)
        if child.exitcode is not None:
            return
        await asyncio.sleep(0.01)


async def _exited(child: BaseProcess, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(child.sentinel, readable)
    try:
        await asyncio.wait_for(exited, timeout_s)
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(child.sentinel)


class PipeReports:
    """The child's side of :class:`~service.adapters.relay.RelayReports`: each report down the pipe."""

    def __init__(self, conn: Connection, on_broken: Callable[[], None]) -> None:
        self._conn = conn
        self._on_broken = on_broken

    def _send(self, name: str, *args: Any) -> None:
        try:
            self._conn.send((name, args))
        except OSError:  # the parent is gone: stop
            self._on_broken()

    def active(self, active: bool) -> None:
        self._send("active", active)

    def published(self, events: int, results: int, seconds: float) -> None:
        self._send("published", events, results, seconds)

    def backlog(self, rows: int) -> None:
        self._send("backlog", rows)


def child_main(settings: Settings, conn: Connection) -> None:
    """The child process: relay until the pipe to the parent ends."""
    from service.cli import event_loop_runner
    from service.logging import configure_logging

    # Ctrl-C reaches the whole process group: the parent decides when its relay stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_format, settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        event_loop_runner(settings)(_relay_until_parent_goes(settings, conn))


async def _relay_until_parent_goes(settings: Settings, conn: Connection) -> None:
    from service.adapters.reply_topics import ReplyTopics
    from service.app import freeze_startup_heap, start_relay
    from service.entrypoints.kafka_security import kafka_security
    from service.tracing import tracer_provider_from_env

    loop = asyncio.get_running_loop()
    parent_gone = asyncio.Event()
    loop.add_reader(conn.fileno(), parent_gone.set)  # the parent never writes: readable means ended
    loop.add_signal_handler(signal.SIGTERM, parent_gone.set)
    producers: list[Any] = []

    async def relay() -> None:
        relay, producer = await start_relay(settings, kafka_security(settings), PipeReports(conn, parent_gone.set),
                                            ReplyTopics(settings.reply_to_pattern),
                                            tracer_provider=tracer_provider_from_env())
        producers.append(producer)
        freeze_startup_heap()  # as the service does once ready
        await relay.run()

    task = asyncio.create_task(relay(), name="relay")
    stop = asyncio.create_task(parent_gone.wait())
    await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    task.cancel()
    # Cancelling the relay closes its session, and the lock goes with it.
    failed = (await asyncio.gather(task, return_exceptions=True))[0]
    for producer in producers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), _STOP_WAIT_S)
    conn.close()
    if isinstance(failed, Exception):  # it never got going (e.g. no broker for its producer)
        log.warning("relay process failed", error=type(failed).__name__)
        raise SystemExit(1)
