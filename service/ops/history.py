"""The history from the operator's side: ``tickets events republish``, and the refill that
``tickets dev`` does at start.

The history (``ticket_events``) is permanent, so any part of it can be published again: the same
bodies, hence the same ``event_id``\\s, and the relay's headers (trace context included), keyed by
ticket id, in ``seq`` order — per ticket that is ``ticket_version`` order. Only rows the relay has
already published (by the progress it stores in ``relay_progress``) are republished; the relay
publishes the others itself, so a republish never gets ahead of it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from ticket_contracts import topics

from service.adapters.message_headers import headers_of_stored
from service.adapters.relay import unpublished
from service.ops.kafka import partitions_of, producer, reader, topic_partitions
from service.ops.outbox import OpsError, engine_for
from service.settings import Settings

#: Topics a republish may never write to: the service's inputs, its DLQs, results and heartbeats.
FORBIDDEN_TARGETS = frozenset(topics.ALL_TOPICS) - {topics.EVENTS}
_CHUNK = 1000


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
    body, ticket = {"ticket_events": ("body", "ticket_id"), "processed_commands": ("result", "ticket_id")}[table]
    where = f"NOT {unpublished(table)} AND seq > :after"
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
