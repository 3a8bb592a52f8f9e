"""The outbox relay: publishes committed history events and command results, in order.

Exactly one instance relays at a time: the one holding a PostgreSQL session advisory lock
on its own connection (if it dies, the lock goes with the connection and another instance
takes over). It wakes on NOTIFY from committing transactions, with polling as a fallback.
Each round publishes events in ``seq`` order — per ticket that is ``ticket_version`` order —
awaits every acknowledgement, then marks the rows published. A crash between publishing and
marking re-publishes the same rows (at least once, same ``event_id``); nothing is deleted.
Broker outages are retried forever.

Each message goes out with the headers of :mod:`.message_headers` — among them the ``traceparent``
stored with the row, so events and results continue the trace of the command that caused them. A
span per round (``outbox publish``) and, when tracing exports, one per message as a child of that
command's span; the round's duration (publish to last acknowledgement) is a histogram.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg
from opentelemetry import trace
from ticket_contracts import topics

from service import tracing
from service.logging import get_logger
from service.metrics import Metrics

from .message_headers import KafkaHeaders, headers_of_stored
from .reply_topics import DEFAULT_REPLY_TOPICS, ReplyTopics
from .unit_of_work import NOTIFY_CHANNEL

log = get_logger(__name__)
RELAY_LOCK_KEY = 0x7469636B  # "tick"
Publish = Callable[[bytes, str, bytes | None, KafkaHeaders], Awaitable[Awaitable[Any]]]
#: (body, topic, key, traceparent, tracestate)
Outgoing = tuple[str, str, Any, str | None, str | None]

#: One round trip for both outboxes: the oldest unpublished events from ``$2`` on (in seq order, which
#: per ticket is ticket_version order), the oldest unpublished results from ``$3`` on, and one row
#: ('s') with the statement's snapshot: the oldest transaction still running and the next to come
#: (``ScanBounds``).
_UNPUBLISHED = """(SELECT 'e' AS kind, seq, ticket_id, body, NULL::text AS reply_to, traceparent, tracestate,
                          NULL::bigint AS xmax
                    FROM ticket_events WHERE published_at IS NULL AND seq >= $2 ORDER BY seq LIMIT $1)
                 UNION ALL
                 (SELECT 'r', seq, ticket_id, result, reply_to, traceparent, tracestate, NULL FROM processed_commands
                    WHERE result_published_at IS NULL AND seq >= $3 ORDER BY seq LIMIT $1)
                 UNION ALL
                 SELECT 's', pg_snapshot_xmin(s)::text::bigint, NULL, NULL, NULL, NULL, NULL,
                        pg_snapshot_xmax(s)::text::bigint FROM pg_current_snapshot() AS s"""
_MARK = """WITH events AS (UPDATE ticket_events SET published_at = now() WHERE seq = ANY($1::bigint[]))
           UPDATE processed_commands SET result_published_at = now() WHERE seq = ANY($2::bigint[])"""
BACKLOG_SQL = """SELECT (SELECT count(*) FROM ticket_events WHERE published_at IS NULL)
                   + (SELECT count(*) FROM processed_commands WHERE result_published_at IS NULL)"""
#: The same, counted from the relay's bounds (nothing below them is unpublished).
_BACKLOG_FROM = """SELECT (SELECT count(*) FROM ticket_events WHERE published_at IS NULL AND seq >= $1)
                     + (SELECT count(*) FROM processed_commands WHERE result_published_at IS NULL AND seq >= $2)"""
#: Seconds since the oldest unpublished row was committed (0 when nothing waits); both use the
#: partial "unpublished" indexes.
OLDEST_UNPUBLISHED_AGE_SQL = """SELECT COALESCE(EXTRACT(EPOCH FROM now() - LEAST(
    (SELECT occurred_at FROM ticket_events WHERE published_at IS NULL ORDER BY seq LIMIT 1),
    (SELECT processed_at FROM processed_commands WHERE result_published_at IS NULL ORDER BY seq LIMIT 1)
)), 0)::float8"""


class ScanBounds:
    """Where the relay's reads of one outbox table start: ``lo``, below which every row is published.

    The partial "unpublished" index keeps an entry for every row marked since the table's last
    vacuum, and a read from its start steps over all of them: with a million marked rows, ~2,800
    index pages — 5 ms per round, warm (bench/relay_read.sql). From ``lo`` it reads a few pages.

    ``lo`` may pass a ``seq`` only once no transaction that could still commit a row below it is
    running. After a round that read rows up to ``seq`` m, every row below m + 1 that will ever
    commit is either published or belongs to a transaction running at that read: it had its id
    (the insert triggers of migration e1b7c3a9f502 assign it before the row takes its ``seq``), so
    it is below that snapshot's ``xmax``; a transaction that starts later takes ``seq`` above m (the
    identity sequences hand out values in call order — CACHE 1, as created, which per-ticket order
    relies on too).
    Once a later read's snapshot has ``xmin`` ≥ that ``xmax``, all of those have ended and that
    read saw what they committed — so, once its rows are published, ``lo`` becomes m + 1 (or less,
    where the read stopped at its LIMIT below). A candidate ripens a round or two later; a relay
    that starts again starts at 0."""

    def __init__(self) -> None:
        self.lo = 0
        #: (bound, xmax of the snapshot that saw the rows below bound), oldest first.
        self._pending: list[tuple[int, int]] = []

    def published(self, seqs: list[int], full: bool, xmin: int, xmax: int) -> None:
        """A round's rows (``seqs`` ascending, read from ``lo`` with ``full`` saying the LIMIT was
        reached) are published and marked; ``xmin``/``xmax`` are its read's snapshot."""
        if seqs:  # ripe at once when nothing was running at this read (xmax == xmin)
            self._pending.append((seqs[-1] + 1, xmax))
        ripe = [bound for bound, seen_xmax in self._pending if seen_xmax <= xmin]
        if ripe:
            bound = max(ripe)
            if full:  # rows beyond this read's last one may still wait
                bound = min(bound, seqs[-1] + 1)
            self.lo = max(self.lo, bound)
        self._pending = [(bound, seen) for bound, seen in self._pending if bound > self.lo and seen > xmin]


class RelayReports(Protocol):
    """What the relay tells its host: this process's metrics (:class:`MetricsReports`), or the
    pipe to the parent when the relay runs in a process of its own (``service.relay_process``)."""

    def active(self, active: bool) -> None: ...

    def published(self, events: int, results: int, seconds: float) -> None: ...

    def backlog(self, rows: int) -> None: ...


class MetricsReports:
    """The relay's reports into Prometheus metrics, and its leadership to ``on_active``."""

    def __init__(self, metrics: Metrics, on_active: Callable[[bool], None] | None = None) -> None:
        self._metrics = metrics
        self._on_active = on_active

    def active(self, active: bool) -> None:
        self._metrics.relay_active.set(1 if active else 0)
        if self._on_active:
            self._on_active(active)

    def published(self, events: int, results: int, seconds: float) -> None:
        """One round: its rows, and the time from its first send to its last acknowledgement."""
        self._metrics.relay_publish_seconds.observe(seconds)
        self._metrics.published.labels("event").inc(events)
        self._metrics.published.labels("result").inc(results)

    def backlog(self, rows: int) -> None:
        self._metrics.outbox_backlog.set(rows)


class OutboxRelay:
    def __init__(self, dsn: str, publish: Publish, reports: RelayReports, *, batch_size: int, poll_interval_s: float,
                 retry_max_s: float = 10.0, tracer_provider: trace.TracerProvider | None = None,
                 may_lead: Callable[[], bool] = lambda: True,
                 reply_topics: ReplyTopics = DEFAULT_REPLY_TOPICS) -> None:
        self._reply_topics = reply_topics
        self._may_lead = may_lead
        provider = tracer_provider or trace.NoOpTracerProvider()
        self._tracer = provider.get_tracer(tracing.INSTRUMENTATION)
        #: Per-message spans only when they go somewhere; the round span is cheap either way.
        self._span_per_message = not isinstance(provider, trace.NoOpTracerProvider)
        self._dsn = dsn
        self._publish = publish
        self._reports = reports
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
        conn = await self.connect()
        try:
            # An instance that is stopping never takes the relay (it would hand it over at once).
            while not (self._may_lead() and await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY)):
                await asyncio.sleep(self._poll * 2)
            self._set_active(True)
            log.info("this instance now relays the outbox")
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
            events, results = ScanBounds(), ScanBounds()
            while True:
                self._wake.clear()
                if await self._round(conn, events, results) < self._batch:
                    try:
                        await asyncio.wait_for(self._wake.wait(), self._poll)
                    except TimeoutError:
                        self._reports.backlog(await conn.fetchval(_BACKLOG_FROM, events.lo, results.lo))
        finally:
            self._set_active(False)  # now, not after the back-off: the lock goes with the connection
            await _close(conn)

    async def connect(self) -> asyncpg.Connection:
        """The relay's session. Its commits (the marks) are asynchronous: PostgreSQL acknowledges
        them before their WAL reaches the disk — ~1 ms less per round, the largest part of a small
        round's marking. Losing the last marks to a database crash is the crash between publishing
        and marking that the relay already allows for: those rows are published again (same
        ``event_id``). Commands' transactions are not affected; they stay synchronous."""
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn, server_settings={"synchronous_commit": "off"})
        return conn

    async def _round(self, conn: asyncpg.Connection, event_bounds: ScanBounds, result_bounds: ScanBounds) -> int:
        rows = await conn.fetch(_UNPUBLISHED, self._batch, event_bounds.lo, result_bounds.lo)
        snapshot = next(r for r in rows if r["kind"] == "s")
        xmin, xmax = snapshot["seq"], snapshot["xmax"]
        events = [r for r in rows if r["kind"] == "e"]
        results = [r for r in rows if r["kind"] == "r"]
        if events or results:
            await self._publish_round(conn, events, results)
        for bounds, done in ((event_bounds, events), (result_bounds, results)):
            bounds.published([r["seq"] for r in done], len(done) == self._batch, xmin, xmax)
        return max(len(events), len(results))

    async def _publish_round(self, conn: asyncpg.Connection, events: list[Any], results: list[Any]) -> None:
        # Checked again here: a stored reply_to outside the (possibly narrowed) pattern is never written to.
        replies = [_outgoing(r, r["reply_to"]) for r in results
                   if r["reply_to"] and self._reply_topics.allows(r["reply_to"])]
        messages = [_outgoing(r, topics.EVENTS) for r in events] + [_outgoing(r, topics.COMMAND_RESULTS) for r in results]
        started = time.perf_counter()
        with self._tracer.start_as_current_span(
            "outbox publish", kind=trace.SpanKind.PRODUCER,
            links=tracing.links(tracing.extract({"traceparent": m[3]}) for m in messages if m[3]),
            attributes={"messaging.system": "kafka", "messaging.batch.message_count": len(messages)},
        ):
            await self._send(messages, replies)
        seconds = time.perf_counter() - started
        await conn.execute(_MARK, [r["seq"] for r in events], [r["seq"] for r in results])
        self._reports.published(len(events), len(results), seconds)

    async def _send(self, messages: list[Outgoing], best_effort: list[Outgoing] | None = None) -> None:
        """Publish ``messages`` and await every acknowledgement; any failure raises (and is retried).

        ``best_effort`` copies go to client-named ``reply_to`` topics. One the broker refuses (missing,
        invalid name) is logged and skipped: retried, it would hold back every later result for ever.
        The result itself is on the results topic by then."""
        spans = [self._message_span(m) for m in messages] if self._span_per_message else []
        futures = [await self._publish(*_record(m)) for m in messages]
        copies = [(m[1], await _attempt(self._publish(*_record(m)))) for m in best_effort or []]
        try:
            await asyncio.gather(*futures)
        finally:
            for span in spans:
                span.end()
        for topic, copy in copies:
            if not isinstance(copy, Exception):
                copy = await _attempt(copy)
            if isinstance(copy, Exception):
                log.warning("result not delivered to its reply_to topic", reply_to=topic[:249],
                            error=type(copy).__name__)

    def _message_span(self, message: Outgoing) -> trace.Span:
        parent = tracing.extract({"traceparent": message[3], **({"tracestate": message[4]} if message[4] else {})}) \
            if message[3] else None
        return self._tracer.start_span(f"{message[1]} publish", context=parent, kind=trace.SpanKind.PRODUCER,
                                       attributes={"messaging.system": "kafka",
                                                   "messaging.destination.name": message[1]})

    def _set_active(self, active: bool) -> None:
        self.active = active
        self._reports.active(active)


def _key(key: Any) -> bytes | None:
    return str(key).encode() if key else None


def _outgoing(row: Any, topic: str) -> Outgoing:
    return row["body"], topic, row["ticket_id"], row["traceparent"], row["tracestate"]


def _record(message: Outgoing) -> tuple[bytes, str, bytes | None, KafkaHeaders]:
    body, topic, key, traceparent, tracestate = message
    return body.encode(), topic, _key(key), headers_of_stored(body, traceparent, tracestate)


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
