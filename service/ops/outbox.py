"""The outbox and the history from the operator's side: ``tickets outbox status`` and
``tickets events republish`` (also what ``tickets dev`` uses to refill its memory-only broker).

The history (``ticket_events``) is permanent, so any part of it can be published again: the same
bodies, hence the same ``event_id``\\s, and the relay's headers (trace context included), keyed by
ticket id, in ``seq`` order — per ticket that is
``ticket_version`` order. Only rows the relay has already published are republished; the relay
publishes the others itself, so a republish never gets ahead of it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from ticket_contracts import topics

from service.adapters.message_headers import headers_of_stored
from service.adapters.relay import RELAY_LOCK_KEY
from service.ops.kafka import partitions_of, producer, reader, topic_partitions
from service.settings import Settings

#: Topics a republish may never write to: the service's inputs, its DLQs, results and heartbeats.
FORBIDDEN_TARGETS = frozenset(topics.ALL_TOPICS) - {topics.EVENTS}
#: The relay names its database session ``<prefix><instance id>`` (see service.app).
RELAY_APPLICATION_PREFIX = "tickets-relay "
_CHUNK = 1000


class OpsError(ValueError):
    """A request the tools refuse (a forbidden or missing topic, nothing selected)."""


@dataclass(frozen=True)
class Backlog:
    rows: int
    oldest: datetime | None

    def age(self, now: datetime) -> timedelta | None:
        return now - self.oldest if self.oldest else None


@dataclass(frozen=True)
class RelayHolder:
    pid: int
    application_name: str
    client_addr: str | None
    backend_start: datetime | None

    @property
    def instance_id(self) -> str | None:
        name = self.application_name
        return name.removeprefix(RELAY_APPLICATION_PREFIX) if name.startswith(RELAY_APPLICATION_PREFIX) else None


@dataclass(frozen=True)
class OutboxStatus:
    now: datetime
    events: Backlog
    results: Backlog
    history_rows: int
    last_seq: int | None
    relay: RelayHolder | None

    def as_json(self) -> dict[str, Any]:
        def backlog(b: Backlog) -> dict[str, Any]:
            age = b.age(self.now)
            return {"rows": b.rows, "oldest": b.oldest.isoformat() if b.oldest else None,
                    "oldest_age_s": round(age.total_seconds(), 3) if age is not None else None}

        relay = None
        if self.relay is not None:
            relay = {"instance_id": self.relay.instance_id, "application_name": self.relay.application_name,
                     "pid": self.relay.pid, "client_addr": self.relay.client_addr,
                     "since": self.relay.backend_start.isoformat() if self.relay.backend_start else None}
        return {"at": self.now.isoformat(), "events": backlog(self.events), "results": backlog(self.results),
                "history_rows": self.history_rows, "last_seq": self.last_seq, "relay": relay}


_EVENTS_BACKLOG = text("""
    SELECT count(*) AS rows,
           (SELECT occurred_at FROM ticket_events WHERE published_at IS NULL ORDER BY seq LIMIT 1) AS oldest
      FROM ticket_events WHERE published_at IS NULL""")
_RESULTS_BACKLOG = text("""
    SELECT count(*) AS rows,
           (SELECT processed_at FROM processed_commands WHERE result_published_at IS NULL ORDER BY seq LIMIT 1)
             AS oldest
      FROM processed_commands WHERE result_published_at IS NULL""")
_HISTORY = text("SELECT count(*) AS rows, max(seq) AS last_seq FROM ticket_events")
#: A one-bigint advisory lock shows as classid = high 32 bits, objid = low 32 bits, objsubid = 1.
_RELAY_HOLDER = text("""
    SELECT a.pid, a.application_name, host(a.client_addr) AS client_addr, a.backend_start
      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
       AND l.classid::bigint = (CAST(:key AS bigint) >> 32)
       AND l.objid::bigint = (CAST(:key AS bigint) & 4294967295)
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""")


def engine_for(settings: Settings) -> AsyncEngine:
    return create_async_engine(settings.database_url, pool_size=1, max_overflow=0)


async def outbox_status(settings: Settings) -> OutboxStatus:
    engine = engine_for(settings)
    try:
        async with engine.connect() as conn:
            now = (await conn.execute(text("SELECT now()"))).scalar_one()
            events = (await conn.execute(_EVENTS_BACKLOG)).one()
            results = (await conn.execute(_RESULTS_BACKLOG)).one()
            history = (await conn.execute(_HISTORY)).one()
            holder = (await conn.execute(_RELAY_HOLDER, {"key": RELAY_LOCK_KEY})).first()
    finally:
        await engine.dispose()
    relay = RelayHolder(holder.pid, holder.application_name or "", holder.client_addr, holder.backend_start) \
        if holder is not None else None
    return OutboxStatus(now, Backlog(events.rows, events.oldest), Backlog(results.rows, results.oldest),
                        history.rows, history.last_seq, relay)


@dataclass(frozen=True)
class HistorySelection:
    """Which history rows: ``seq ≥ since_seq`` and, when given, only these tickets."""

    since_seq: int = 0
    tickets: frozenset[uuid.UUID] = frozenset()


@dataclass(frozen=True)
class Republished:
    topic: str
    rows: int
    first_seq: int | None
    last_seq: int | None


async def _history(engine: AsyncEngine, table: str, selection: HistorySelection
                   ) -> AsyncIterator[list[Any]]:
    """Published rows in seq order, a chunk at a time (keyset paging on seq)."""
    body, published, ticket = {"ticket_events": ("body", "published_at", "ticket_id"),
                               "processed_commands": ("result", "result_published_at", "ticket_id")}[table]
    where = f"{published} IS NOT NULL AND seq > :after"
    if selection.tickets:
        where += f" AND {ticket} = ANY(:tickets)"
    query = text(f"SELECT seq, {ticket} AS ticket_id, {body} AS body, traceparent, tracestate FROM {table} WHERE {where} "
                 f"ORDER BY seq LIMIT {_CHUNK}")
    after = selection.since_seq - 1
    while True:
        async with engine.connect() as conn:
            params: dict[str, Any] = {"after": after}
            if selection.tickets:
                params["tickets"] = list(selection.tickets)
            rows = (await conn.execute(query, params)).all()
        if not rows:
            return
        yield list(rows)
        after = rows[-1].seq


def check_target(topic: str) -> None:
    if topic in FORBIDDEN_TARGETS:
        raise OpsError(f"refusing to publish history to {topic}: it is one of the service's own input, "
                       f"dead-letter, result or heartbeat topics")


async def republish(settings: Settings, selection: HistorySelection, *, to_topic: str = topics.EVENTS,
                    dry_run: bool = False, results: bool = False) -> Republished:
    """Publish history rows again, in seq order, with their original bodies (and so event ids).

    ``results=True`` republishes stored command results to the results topic instead (dev refill)."""
    table = "processed_commands" if results else "ticket_events"
    if not results:
        check_target(to_topic)
    await topic_partitions(settings, to_topic)  # never create a topic by publishing to it
    engine = engine_for(settings)
    count, first, last = 0, None, None
    try:
        async with producer(settings, linger_ms=5, max_batch_size=1 << 20) as out:
            async for rows in _history(engine, table, selection):
                if not dry_run:
                    futures = [await out.send(to_topic, row.body.encode(), key=_key(row.ticket_id),
                                              headers=headers_of_stored(row.body, row.traceparent, row.tracestate))
                               for row in rows]
                    for future in futures:
                        await future
                count += len(rows)
                first = rows[0].seq if first is None else first
                last = rows[-1].seq
    finally:
        await engine.dispose()
    return Republished(to_topic, count, first, last)


async def topic_is_empty(settings: Settings, topic: str) -> bool:
    async with reader(settings) as consumer:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
    return all(ends[tp] <= starts[tp] for tp in tps)


async def refill(settings: Settings) -> list[Republished]:
    """``tickets dev``: an empty events topic (a fresh memory-only broker) gets the published history
    back, and an empty results topic the published command results; non-empty topics are left alone."""
    done = []
    for topic, results in ((topics.EVENTS, False), (topics.COMMAND_RESULTS, True)):
        if await topic_is_empty(settings, topic):
            done.append(await republish(settings, HistorySelection(), to_topic=topic, results=results))
    return done


def parse_tickets(values: Iterable[str]) -> frozenset[uuid.UUID]:
    try:
        return frozenset(uuid.UUID(v) for v in values)
    except ValueError as error:
        raise OpsError(f"--ticket takes a ticket id (UUID): {error}") from None


def _key(ticket_id: Any) -> bytes | None:
    return str(ticket_id).encode() if ticket_id else None
