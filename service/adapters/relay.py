"""The outbox relay: publishes committed history events and command results, in order.

Exactly one instance relays at a time: the one holding a PostgreSQL session advisory lock
on its own connection (if it dies, the lock goes with the connection and another instance
takes over). It wakes on NOTIFY from committing transactions, with polling as a fallback.
Each round publishes events in ``seq`` order — per ticket that is ``ticket_version`` order —
awaits every acknowledgement, then marks the rows published. A crash between publishing and
marking re-publishes the same rows (at least once, same ``event_id``); nothing is deleted.
Broker outages are retried forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from ticket_contracts import topics

from service.logging import get_logger
from service.metrics import Metrics

from .reply_topics import DEFAULT_REPLY_TOPICS, ReplyTopics
from .unit_of_work import NOTIFY_CHANNEL

log = get_logger(__name__)
RELAY_LOCK_KEY = 0x7469636B  # "tick"
Publish = Callable[[bytes, str, bytes | None], Awaitable[Awaitable[Any]]]

#: One round trip for both outboxes: the oldest unpublished events (in seq order, which per ticket is
#: ticket_version order), then the oldest unpublished results.
_UNPUBLISHED = """(SELECT 'e' AS kind, seq, ticket_id, body, NULL::text AS reply_to FROM ticket_events
                    WHERE published_at IS NULL ORDER BY seq LIMIT $1)
                 UNION ALL
                 (SELECT 'r', seq, ticket_id, result, reply_to FROM processed_commands
                    WHERE result_published_at IS NULL ORDER BY seq LIMIT $1)"""
_MARK = """WITH events AS (UPDATE ticket_events SET published_at = now() WHERE seq = ANY($1::bigint[]))
           UPDATE processed_commands SET result_published_at = now() WHERE seq = ANY($2::bigint[])"""
BACKLOG_SQL = """SELECT (SELECT count(*) FROM ticket_events WHERE published_at IS NULL)
                   + (SELECT count(*) FROM processed_commands WHERE result_published_at IS NULL)"""


class OutboxRelay:
    def __init__(self, dsn: str, publish: Publish, metrics: Metrics, *, batch_size: int, poll_interval_s: float,
                 retry_max_s: float = 10.0, on_active: Callable[[bool], None] | None = None,
                 reply_topics: ReplyTopics = DEFAULT_REPLY_TOPICS) -> None:
        self._reply_topics = reply_topics
        self._on_active = on_active
        self._dsn = dsn
        self._publish = publish
        self._metrics = metrics
        self._batch = batch_size
        self._poll = poll_interval_s
        self._retry_max = retry_max_s
        self._wake = asyncio.Event()
        self.active = False

    async def run(self) -> None:
        """Forever: become the relay when possible, relay until the connection breaks."""
        delay = 0.2
        while True:
            try:
                await self._lead()
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as error:  # database or broker trouble: back off, then try again
                log.warning("relay interrupted, retrying", error=type(error).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
            finally:
                self._set_active(False)

    async def _lead(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY):
                await asyncio.sleep(self._poll * 2)
            self._set_active(True)
            log.info("this instance now relays the outbox")
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
            while True:
                self._wake.clear()
                if await self._round(conn) < self._batch:
                    try:
                        await asyncio.wait_for(self._wake.wait(), self._poll)
                    except TimeoutError:
                        self._metrics.outbox_backlog.set(await conn.fetchval(BACKLOG_SQL))
        finally:
            self._set_active(False)  # now, not after the back-off: the lock goes with the connection
            await _close(conn)

    async def _round(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(_UNPUBLISHED, self._batch)
        if not rows:
            return 0
        events = [r for r in rows if r["kind"] == "e"]
        results = [r for r in rows if r["kind"] == "r"]
        # Checked again here: a stored reply_to outside the (possibly narrowed) pattern is never written to.
        replies = [(r["body"], r["reply_to"], r["ticket_id"]) for r in results
                   if r["reply_to"] and self._reply_topics.allows(r["reply_to"])]
        await self._send([(r["body"], topics.EVENTS, r["ticket_id"]) for r in events]
                         + [(r["body"], topics.COMMAND_RESULTS, r["ticket_id"]) for r in results], replies)
        await conn.execute(_MARK, [r["seq"] for r in events], [r["seq"] for r in results])
        self._metrics.published.labels("event").inc(len(events))
        self._metrics.published.labels("result").inc(len(results))
        return max(len(events), len(results))

    async def _send(self, messages: list[tuple[str, str, Any]],
                    best_effort: list[tuple[str, str, Any]] | None = None) -> None:
        """Publish ``messages`` and await every acknowledgement; any failure raises (and is retried).

        ``best_effort`` copies go to client-named ``reply_to`` topics. One the broker refuses (missing,
        invalid name) is logged and skipped: retried, it would hold back every later result for ever.
        The result itself is on the results topic by then."""
        futures = [await self._publish(body.encode(), topic, _key(key)) for body, topic, key in messages]
        copies = [(topic, await _attempt(self._publish(body.encode(), topic, _key(key))))
                  for body, topic, key in best_effort or []]
        await asyncio.gather(*futures)
        for topic, copy in copies:
            if not isinstance(copy, Exception):
                copy = await _attempt(copy)
            if isinstance(copy, Exception):
                log.warning("result not delivered to its reply_to topic", reply_to=topic[:249],
                            error=type(copy).__name__)

    def _set_active(self, active: bool) -> None:
        self.active = active
        self._metrics.relay_active.set(1 if active else 0)
        if self._on_active:
            self._on_active(active)


def _key(key: Any) -> bytes | None:
    return str(key).encode() if key else None


async def _attempt(awaitable: Awaitable[Any]) -> Any:
    """The awaitable's value, or the exception it raised."""
    try:
        return await awaitable
    except Exception as error:
        return error


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 5)
    except Exception:
        conn.terminate()
