"""The outbox relay: publishes committed history events and command results, in order.

Exactly one instance relays at a time: the one holding a PostgreSQL session advisory lock
on its own connection (if it dies, the lock goes with the connection and another instance
takes over). It wakes on NOTIFY from committing transactions, with polling as a fallback.
Each round publishes events in ``seq`` order — per ticket that is ``ticket_version`` order —
awaits every acknowledgement, then stores how far it got (``relay_progress``: one row per outbox
table, see :class:`OutboxProgress`) instead of marking each row. A crash between publishing and
storing re-publishes the same rows (at least once, same ``event_id``); nothing is deleted.
Broker outages are retried forever.

Each message goes out with the headers of :mod:`.message_headers` — among them the ``traceparent``
stored with the row, so events and results continue the trace of the command that caused them. A
span per round (``outbox publish``) and, when tracing exports, one per message as a child of that
command's span; the round's duration (publish to last acknowledgement) is a histogram.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import asyncpg
from opentelemetry import trace
from ticket_contracts import topics

from service import tracing
from service.logging import get_logger
from service.metrics import Metrics

from .kafka_batches import OutgoingRecord, PublishMany
from .message_headers import headers_of_stored
from .reply_topics import DEFAULT_REPLY_TOPICS, ReplyTopics
from .unit_of_work import NOTIFY_CHANNEL

log = get_logger(__name__)
RELAY_LOCK_KEY = 0x7469636B  # "tick"
#: (body, topic, key, traceparent, tracestate)
Outgoing = tuple[str, str, Any, str | None, str | None]

#: The outbox tables, as named in ``relay_progress.outbox``.
OUTBOXES = ("ticket_events", "processed_commands")

#: One round trip for both outboxes: the oldest unpublished events (in seq order, which per ticket
#: is ticket_version order) — those among the holes ``$3`` and those past ``$2`` — the oldest
#: unpublished results (holes ``$5``, past ``$4``), and one row ('s') with the statement's snapshot:
#: the oldest transaction still running and the next to come (``OutboxProgress``). Each side is two
#: index scans on ``seq`` (an ``OR`` would make PostgreSQL fetch and sort every row past the bound).
_UNPUBLISHED = """(SELECT 'e' AS kind, seq, ticket_id, body, NULL::text AS reply_to, traceparent, tracestate,
                          NULL::bigint AS xmax
                    FROM ((SELECT seq, ticket_id, body, traceparent, tracestate FROM ticket_events
                            WHERE seq = ANY($3::bigint[]))
                          UNION ALL
                          (SELECT seq, ticket_id, body, traceparent, tracestate FROM ticket_events
                            WHERE seq > $2 ORDER BY seq LIMIT $1)) e
                    ORDER BY seq LIMIT $1)
                 UNION ALL
                 (SELECT 'r', seq, ticket_id, result, reply_to, traceparent, tracestate, NULL
                    FROM ((SELECT seq, ticket_id, result, reply_to, traceparent, tracestate FROM processed_commands
                            WHERE seq = ANY($5::bigint[]))
                          UNION ALL
                          (SELECT seq, ticket_id, result, reply_to, traceparent, tracestate FROM processed_commands
                            WHERE seq > $4 ORDER BY seq LIMIT $1)) r
                    ORDER BY seq LIMIT $1)
                 UNION ALL
                 SELECT 's', pg_snapshot_xmin(s)::text::bigint, NULL, NULL, NULL, NULL, NULL,
                        pg_snapshot_xmax(s)::text::bigint FROM pg_current_snapshot() AS s"""
#: The relay's progress after a round, both rows in one statement (replacing a mark per row).
_STORE = """UPDATE relay_progress AS p SET max_seen = u.max_seen, holes = u.holes, updated_at = now()
              FROM (VALUES ('ticket_events', $1::bigint, $2::bigint[]),
                           ('processed_commands', $3::bigint, $4::bigint[])) AS u(outbox, max_seen, holes)
             WHERE p.outbox = u.outbox"""
#: A database built without the migrations (``metadata.create_all``) has no rows yet: from nothing.
_START = "INSERT INTO relay_progress (outbox) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING"
_LOAD = "SELECT outbox, max_seen, holes FROM relay_progress"


def unpublished(table: str) -> str:
    """SQL condition: a row of ``table`` the relay has not published, by its stored progress (a
    hole, or past ``max_seen``). Only committed rows match, so counts are of rows waiting."""
    progress = f"FROM relay_progress WHERE outbox = '{table}'"
    return (f"(seq > COALESCE((SELECT max_seen {progress}), 0)"
            f" OR seq = ANY(COALESCE((SELECT holes {progress}), '{{}}')))")


#: Rows waiting in each outbox, by the progress the relay last stored (a round behind at most).
UNPUBLISHED_COUNTS_SQL = f"""SELECT (SELECT count(*) FROM ticket_events WHERE {unpublished("ticket_events")}) AS events,
    (SELECT count(*) FROM processed_commands WHERE {unpublished("processed_commands")}) AS results"""
BACKLOG_SQL = f"SELECT events + results FROM ({UNPUBLISHED_COUNTS_SQL}) AS c"
#: Seconds since the oldest unpublished row was committed (0 when nothing waits). ``min`` over the
#: waiting rows, not the first by ``seq``: with an ``OR`` PostgreSQL could walk the primary key from
#: the start of the history to find it.
OLDEST_UNPUBLISHED_AGE_SQL = f"""SELECT COALESCE(EXTRACT(EPOCH FROM now() - LEAST(
    (SELECT min(occurred_at) FROM ticket_events WHERE {unpublished("ticket_events")}),
    (SELECT min(processed_at) FROM processed_commands WHERE {unpublished("processed_commands")})
)), 0)::float8"""


class OutboxProgress:
    """What the relay has published of one outbox table: every row with ``seq`` ≤ ``max_seen``
    except the ``holes`` — seqs at or below it that no read has returned yet: rows of transactions
    still running at that read, or of ones that rolled back (and seqs handed out but never used).
    Stored in ``relay_progress`` (one small row per table, updated in place: nothing indexed
    changes, so the update is HOT) at most every ``STORE_EVERY_S`` while rows flow
    (:class:`_ProgressStore`), replacing a mark per published row; a new leader starts from what is
    stored, so a crash between sending rounds and storing them sends those rounds again (at least
    once, same ``event_id``).

    The read returns the committed rows among the holes and past ``max_seen``, in ``seq`` order,
    up to its LIMIT. A seq the read passes over (below the last row it returned) was not visible
    to it and becomes a hole. A hole may be dropped only once it can never commit. Its row's
    transaction had its id before the row took its ``seq`` (the insert triggers of migration
    e1b7c3a9f502), and that seq was handed out before the seq of a row the read saw committed (the
    identity sequences hand out values in call order — CACHE 1, as created, which per-ticket order
    relies on too): so that transaction is below the read's snapshot ``xmax`` X. Once a later read's
    snapshot has ``xmin`` ≥ X, every transaction below X has ended and that read sees what they
    committed: if it does not return the hole (and the hole is below where its LIMIT stopped it),
    the hole is gone for good (rolled back, or a seq never used). A hole typically ripens a round
    or two after it appears. Holes loaded by a new leader get the ``xmax`` of its first read (their
    transactions predate it). The state is O(holes): one ``xmax`` per hole, nothing per round, so a
    long transaction holding ``xmin`` back delays the dropping of holes — the seqs of transactions
    that rolled back or still run meanwhile, normally few — but grows nothing else."""

    def __init__(self, max_seen: int = 0, holes: Iterable[int] = ()) -> None:
        self.max_seen = max_seen
        #: hole → ``xmax`` of the first read that passed over it (None: loaded, not yet read).
        self._holes: dict[int, int | None] = dict.fromkeys(holes)

    @property
    def holes(self) -> list[int]:
        return sorted(self._holes)

    @property
    def holes_pending(self) -> bool:
        return bool(self._holes)

    def continued_to(self, last: int) -> None:
        """Rows up to ``last``, exactly those after ``max_seen``, are published (:func:`continued`)."""
        self.max_seen = max(self.max_seen, last)

    def published(self, seqs: list[int], full: bool, xmin: int, xmax: int) -> bool:
        """A round's rows (``seqs`` ascending, read with this progress, ``full`` saying the LIMIT was
        reached) are published; ``xmin``/``xmax`` are its read's snapshot. Returns whether the
        progress changed (and so needs storing)."""
        holes_before = len(self._holes)
        for seq in seqs:
            self._holes.pop(seq, None)
        if seqs and seqs[-1] > self.max_seen:
            past = seqs[bisect.bisect_right(seqs, self.max_seen):]
            if len(past) < seqs[-1] - self.max_seen:  # some seqs were passed over (usually none)
                returned = set(past)
                self._holes.update((seq, xmax) for seq in range(self.max_seen + 1, seqs[-1]) if seq not in returned)
            self.max_seen = seqs[-1]
        # Below ``covered`` the read returned every committed row it looked for.
        covered = seqs[-1] if full else self.max_seen + 1
        for hole, seen in list(self._holes.items()):
            if seen is None:
                self._holes[hole] = seen = xmax
            if seen <= xmin and hole < covered:
                del self._holes[hole]
        return bool(seqs) or len(self._holes) != holes_before


def continued(progress: OutboxProgress, rows: list[Any]) -> list[Any] | None:
    """Of rows handed over by the transactions that committed them (``seq`` ascending), those this
    progress has not published, if publishing them now keeps the outbox's order: they must be
    exactly the seqs after ``max_seen`` (none in between, which another transaction may still hold
    or may have committed unread) and nothing may be a hole (an older row that could still come).
    None: the relay reads instead."""
    if progress.holes_pending:
        return None
    fresh = rows[bisect.bisect_right([r["seq"] for r in rows], progress.max_seen):]
    if fresh and (fresh[0]["seq"] != progress.max_seen + 1 or fresh[-1]["seq"] - progress.max_seen != len(fresh)):
        return None
    return fresh


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
    def __init__(self, dsn: str, publish: PublishMany, reports: RelayReports, *, batch_size: int, poll_interval_s: float,
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
        #: A NOTIFY came (or the poll is due) since the last read: the next round reads.
        self._notified = True
        #: What this process's committed batches handed over since the last round: [(events, results)].
        self._handed: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
        self.active = False

    @property
    def leading(self) -> bool:
        """Whether this relay leads now (:class:`.unit_of_work.OutboxHandoff`)."""
        return self.active

    def hand_off(self, events: list[dict[str, Any]], results: list[dict[str, Any]]) -> bool:
        """A committed batch's outbox rows (``seq`` order, as ``_UNPUBLISHED`` returns them), from a
        unit of work of this process that sent no NOTIFY for them. Published by the next round
        without reading them back if that keeps the order (:func:`continued`), else read. False: this
        relay no longer leads (the unit of work then notifies whoever does). Taken while leading,
        they are published unless the lead is lost first — and then the next leader, which can only
        lock after this one's session ends, reads them in its first round."""
        if not self.active:
            return False
        self._handed.append((events, results))
        self._wake.set()
        return True

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
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._notified_now())
            events, results = await load_progress(conn)
            store = _ProgressStore(conn, events, results)
            self._notified, self._handed = True, []
            try:
                while True:
                    self._wake.clear()
                    handed, self._handed = self._handed, []
                    if self._notified or not handed or not await self._publish_handed(handed, events, results, store):
                        self._notified = False
                        full = await self._round(conn, events, results, store) >= self._batch
                        self._notified = self._notified or full  # a NOTIFY meanwhile, or a full round: read on
                    else:
                        full = False
                    await store.if_due()
                    if not full:
                        await self._wait(conn, store)
            finally:
                await store.last()
        finally:
            self._set_active(False)  # now, not after the back-off: the lock goes with the connection
            await _close(conn)

    async def _wait(self, conn: asyncpg.Connection, store: _ProgressStore) -> None:
        """Until a NOTIFY or a hand-off, storing the progress when it is due; at most the poll
        interval (then the next round reads: the polling fallback)."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), store.wait(self._poll))
                return
            except TimeoutError:
                if store.pending:
                    await store.now()  # then wait on: a store is no reason to read
                    continue
                self._notified = True  # the poll
                # nothing waiting to be stored: the stored progress is the leader's own
                self._reports.backlog(await conn.fetchval(BACKLOG_SQL))
                return

    def _notified_now(self) -> None:
        self._notified = True
        self._wake.set()

    async def _publish_handed(self, handed: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]],
                              events_done: OutboxProgress, results_done: OutboxProgress,
                              store: _ProgressStore) -> bool:
        """Publish what committed batches handed over, if that keeps each outbox's order; False:
        read instead (the rows are committed, so the read returns them)."""
        events = continued(events_done, sorted((r for es, _ in handed for r in es), key=_by_seq))
        results = continued(results_done, sorted((r for _, rs in handed for r in rs), key=_by_seq))
        if events is None or results is None:
            return False
        if events or results:
            seconds = await self._publish_round(events, results)
            if events:
                events_done.continued_to(events[-1]["seq"])
            if results:
                results_done.continued_to(results[-1]["seq"])
            store.changed()
            self._reports.published(len(events), len(results), seconds)
        return True

    async def connect(self) -> asyncpg.Connection:
        """The relay's session. Its commits (storing its progress) are asynchronous: PostgreSQL
        acknowledges them before their WAL reaches the disk — ~1 ms less per round. Losing the last
        stored progress to a database crash is the crash between publishing and storing that the
        relay already allows for: those rows are published again (same ``event_id``). Commands'
        transactions are not affected; they stay synchronous."""
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn, server_settings={"synchronous_commit": "off"})
        return conn

    async def _round(self, conn: asyncpg.Connection, events_done: OutboxProgress,
                     results_done: OutboxProgress, store: _ProgressStore) -> int:
        rows = await conn.fetch(_UNPUBLISHED, self._batch, events_done.max_seen, events_done.holes,
                                results_done.max_seen, results_done.holes)
        snapshot = next(r for r in rows if r["kind"] == "s")
        xmin, xmax = snapshot["seq"], snapshot["xmax"]
        events = [r for r in rows if r["kind"] == "e"]
        results = [r for r in rows if r["kind"] == "r"]
        seconds = await self._publish_round(events, results) if events or results else 0.0
        changed = [progress.published([r["seq"] for r in done], len(done) == self._batch, xmin, xmax)
                   for progress, done in ((events_done, events), (results_done, results))]
        if any(changed):
            store.changed()
        if events or results:
            self._reports.published(len(events), len(results), seconds)
        return max(len(events), len(results))

    async def _publish_round(self, events: list[Any], results: list[Any]) -> float:
        """Sends a round and awaits every acknowledgement; returns the seconds that took."""
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
        return time.perf_counter() - started

    async def _send(self, messages: list[Outgoing], best_effort: list[Outgoing] | None = None) -> None:
        """Publish ``messages`` (one batch per partition, :mod:`.kafka_batches`) and await every
        acknowledgement; any failure raises (and is retried).

        ``best_effort`` copies go to client-named ``reply_to`` topics. One the broker refuses (missing,
        invalid name) is logged and skipped: retried, it would hold back every later result for ever.
        The result itself is on the results topic by then."""
        spans = [self._message_span(m) for m in messages] if self._span_per_message else []
        copied = best_effort or []
        acks = await self._publish([_record(m) for m in [*messages, *copied]])
        futures = acks[:len(messages)]
        copies = [(m[1], ack) for m, ack in zip(copied, acks[len(messages):], strict=True)]
        try:
            await asyncio.gather(*futures)
        finally:
            for span in spans:
                span.end()
        for topic, copy in copies:
            if isinstance(copy := await _attempt(copy), Exception):
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


def _by_seq(row: Any) -> int:
    return row["seq"]  # type: ignore[no-any-return]


def _key(key: Any) -> bytes | None:
    return str(key).encode() if key else None


def _outgoing(row: Any, topic: str) -> Outgoing:
    return row["body"], topic, row["ticket_id"], row["traceparent"], row["tracestate"]


def _record(message: Outgoing) -> OutgoingRecord:
    body, topic, key, traceparent, tracestate = message
    return body.encode(), topic, _key(key), headers_of_stored(body, traceparent, tracestate)


async def _attempt(awaitable: Awaitable[Any]) -> Any:
    """The awaitable's value, or the exception it raised."""
    try:
        return await awaitable
    except Exception as error:
        return error


#: Longest the stored progress lags behind the relay's own while rows flow (see _ProgressStore).
STORE_EVERY_S = 0.1


class _ProgressStore:
    """Stores the leader's progress at most every STORE_EVERY_S, not after every round.

    At a light load the relay runs a round per command batch (a few milliseconds apart), and a
    store after each was a round trip and a row update per round. The relay reads with its own
    progress, in memory; the stored copy is what a new leader starts from and what the backlog
    and age figures count — so it now lags by at most STORE_EVERY_S while rows flow: a leader
    that dies sends those rows again, as it always could between a send and its store (at least
    once, same ``event_id``). Leaving the relay (a stop, a lost connection) stores what is pending
    if the connection still works; idle, nothing is pending."""

    def __init__(self, conn: asyncpg.Connection, events: OutboxProgress, results: OutboxProgress,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._conn, self._events, self._results, self._clock = conn, events, results, clock
        self.pending = False
        self._stored_at = clock()

    def changed(self) -> None:
        self.pending = True

    def wait(self, poll_s: float) -> float:
        """How long the relay may wait for a wake-up: until the pending progress is due, or a poll."""
        if not self.pending:
            return poll_s
        return max(0.0, min(poll_s, STORE_EVERY_S - (self._clock() - self._stored_at)))

    async def if_due(self) -> None:
        if self.pending and self._clock() - self._stored_at >= STORE_EVERY_S:
            await self.now()

    async def now(self) -> None:
        await self._conn.execute(_STORE, self._events.max_seen, self._events.holes,
                                 self._results.max_seen, self._results.holes)
        self.pending, self._stored_at = False, self._clock()

    async def last(self, timeout_s: float = 2.0) -> None:
        """Leaving: store what is pending, if the connection answers within ``timeout_s`` (a
        database that went away unannounced must not hold up a shutdown or a failover)."""
        if self.pending and not self._conn.is_closed():
            try:
                await asyncio.wait_for(self.now(), timeout_s)
            except Exception as error:  # the connection broke: the next leader sends those rows again
                log.warning("relay progress not stored on leaving", error=type(error).__name__)


async def load_progress(conn: asyncpg.Connection) -> tuple[OutboxProgress, OutboxProgress]:
    """The stored progress of both outboxes (events, results), as a new leader starts from it."""
    await conn.execute(_START, list(OUTBOXES))
    stored = {row["outbox"]: OutboxProgress(row["max_seen"], row["holes"]) for row in await conn.fetch(_LOAD)}
    return stored["ticket_events"], stored["processed_commands"]


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 5)
    except Exception:
        conn.terminate()
