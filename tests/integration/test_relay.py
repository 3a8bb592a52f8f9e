"""The outbox relay on real PostgreSQL and a real broker: committed history and results go out
in order, are marked only once acknowledged, survive broker outages and relay failover, and
nothing of a rolled-back transaction ever leaves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from aiokafka import AIOKafkaProducer
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from ticket_contracts import AddReply, ChangeStatus, CreateTicket, LogTime, UpdateTicket, new_id, topics

from service.adapters import tables as t
from service.adapters.relay import RELAY_LOCK_KEY, MetricsReports, OutboxRelay
from service.adapters.reply_topics import DEFAULT_REPLY_TOPICS, ReplyTopics
from service.adapters.unit_of_work import SqlUnitOfWork
from service.adapters.kafka_batches import OutgoingRecord, batched_publisher
from service.app import _asyncpg_dsn
from service.adapters.serialization import result_json
from service.handlers.bus import handle_batch
from service.handlers.messages import Outcome
from service.metrics import Metrics
from tests.support.infra import fresh_topics
from tests.support.streams import TopicReader
from tests.support.waiting import eventually

from .uow_helpers import (HeldUnitOfWork, InjectedFailure, count, counts, customer, incoming, migrated_engine, staff,
                          unpublished)

REPLIES = "tickets.replies.relay-test"


@pytest.fixture
async def engine(database_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(database_server_url) as engine:
        yield engine


@pytest.fixture(scope="module")
async def broker(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    broker = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture(scope="module")
async def reply_topic(kafka_bootstrap: str) -> str:
    return (await fresh_topics(kafka_bootstrap, [REPLIES], partitions=1))[REPLIES]


@pytest.fixture(scope="module")
async def reader(kafka_bootstrap: str, reply_topic: str) -> AsyncIterator[TopicReader]:
    """Everything on the relay's topics; each test's tickets have fresh ids, so keys tell them apart."""
    reader = await TopicReader(kafka_bootstrap, topics.EVENTS, topics.COMMAND_RESULTS, reply_topic).start()
    yield reader
    await reader.stop()


class Publish:
    """The real publish function of the service (records batched per partition), with a switchable
    outage in front of it.

    ``up``: publish and acknowledge; ``down``: the call raises (no connection); ``no_ack`` for
    some topics: their records are never sent and their acknowledgements fail; ``hold``: the
    acknowledgements wait until ``up`` again (or for ever, if the relay is stopped first)."""

    def __init__(self, broker: AIOKafkaProducer) -> None:
        self._publish = batched_publisher(broker)
        self.mode = "up"
        self.no_ack_topics: set[str] = set()
        self.calls: list[tuple[str, bytes | None]] = []
        self.acked: list[tuple[str, bytes | None, bytes]] = []
        self.failures = 0
        self._up = asyncio.Event()
        self._up.set()

    def set(self, mode: str, *, no_ack_topics: frozenset[str] = frozenset()) -> None:
        self.mode, self.no_ack_topics = mode, set(no_ack_topics)
        (self._up.clear if mode == "hold" else self._up.set)()

    async def __call__(self, records: list[OutgoingRecord]) -> list[Any]:
        self.calls.extend((topic, key) for _, topic, key, _ in records)
        if self.mode == "down":
            self.failures += 1
            raise KafkaConnectionError("broker unreachable (injected)")
        refused = [self.mode == "no_ack" and topic in self.no_ack_topics for _, topic, _, _ in records]
        sending = [r for r, no in zip(records, refused, strict=True) if not no]
        delivery = asyncio.ensure_future(self._deliver(sending))
        acks, n = [], 0
        for no in refused:
            if no:
                acks.append(self._fail())
            else:
                acks.append(self._outcome(delivery, n))
                n += 1
        return acks

    async def _fail(self) -> None:
        self.failures += 1
        raise KafkaTimeoutError("no acknowledgement (injected)")

    async def _deliver(self, records: list[OutgoingRecord]) -> list[Any]:
        """The records, all in one call of the real publisher once ``up``; each one's outcome."""
        await self._up.wait()
        outcomes = await asyncio.gather(*await self._publish(records), return_exceptions=True)
        self.acked += [(topic, key, value) for (value, topic, key, _), outcome in zip(records, outcomes, strict=True)
                       if not isinstance(outcome, BaseException)]
        return outcomes

    @staticmethod
    async def _outcome(delivery: asyncio.Future[list[Any]], n: int) -> Any:
        outcome = (await delivery)[n]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def acked_keys(self, topic: str) -> set[bytes | None]:
        return {k for tp, k, _ in self.acked if tp == topic}


class Running:
    """A relay task, its publish function and the history of its ``on_active`` calls."""

    def __init__(self, relay: OutboxRelay, task: asyncio.Task[None], publish: Publish, history: list[bool]) -> None:
        self.relay, self.task, self.publish, self.history = relay, task, publish, history

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@contextlib.asynccontextmanager
async def relaying(
    engine: AsyncEngine, publish: Publish, *, poll: float = 0.2, batch: int = 500,
    reply_topics: ReplyTopics = DEFAULT_REPLY_TOPICS,
) -> AsyncIterator[Running]:
    dsn = _asyncpg_dsn(engine.url.render_as_string(hide_password=False))
    history: list[bool] = []
    relay = OutboxRelay(dsn, publish, MetricsReports(Metrics(), on_active=history.append), batch_size=batch,
                        poll_interval_s=poll, retry_max_s=0.5, reply_topics=reply_topics)
    running = Running(relay, asyncio.create_task(relay.run()), publish, history)
    try:
        yield running
    finally:
        await running.stop()


# ---- writing and reading the outbox ---------------------------------------------------------
async def _handle(engine: AsyncEngine, *commands: Any, reply_to: str | None = None) -> list[Outcome]:
    outcomes = await handle_batch([incoming(c, reply_to=reply_to) for c in commands], SqlUnitOfWork(engine))
    assert all(o.status == "accepted" for o in outcomes), outcomes
    return outcomes


def _create(ticket_id: uuid.UUID) -> CreateTicket:
    return CreateTicket(actor=customer(), payload={"ticket_id": ticket_id, "title": "T", "description": "D"})


async def _all_published(engine: AsyncEngine) -> bool:
    return await unpublished(engine) == (0, 0)


async def _history(engine: AsyncEngine, ticket_id: uuid.UUID) -> list[Any]:
    e = t.ticket_events
    async with engine.connect() as conn:
        return (await conn.execute(select(e).where(e.c.ticket_id == ticket_id).order_by(e.c.seq))).all()


def _key(ticket_id: uuid.UUID) -> bytes:
    return str(ticket_id).encode()


# ---- the happy path -------------------------------------------------------------------------
async def test_publishes_history_in_version_order_and_results_to_both_topics_then_marks_them(
    engine: AsyncEngine, broker: AIOKafkaProducer, reader: TopicReader, reply_topic: str,
) -> None:
    first, second, agent = new_id(), new_id(), staff()
    outcomes = await _handle(engine, _create(first), _create(second), reply_to=reply_topic)
    outcomes += await _handle(
        engine,
        AddReply(actor=agent, payload={"ticket_id": first, "reply_id": uuid.uuid4(), "body": "Hi"}),
        LogTime(actor=agent, payload={"ticket_id": second, "entry_id": uuid.uuid4(), "minutes": 5}),
        UpdateTicket(actor=agent, payload={"ticket_id": first, "title": "Renamed"}),
    )
    outcomes += await _handle(
        engine,
        ChangeStatus(actor=agent, payload={"ticket_id": second, "status": "in_progress"}),
        LogTime(actor=agent, payload={"ticket_id": first, "entry_id": uuid.uuid4(), "minutes": 1}),
        reply_to=reply_topic,
    )
    stored = await counts(engine)

    async with relaying(engine, Publish(broker), batch=3):  # several rounds of three rows
        events_first = await reader.wait_for(first, 5, topic=topics.EVENTS)
        events_second = await reader.wait_for(second, 3, topic=topics.EVENTS)
        await eventually(lambda: _all_published(engine), what="every row marked published")

    for ticket_id, published in ((first, events_first), (second, events_second)):
        history = await _history(engine, ticket_id)
        assert [e["ticket_version"] for e in published] == list(range(1, len(history) + 1))
        assert [e["event_id"] for e in published] == [str(row.event_id) for row in history]
        on_topic = [r.value for r in reader.by_key[_key(ticket_id)] if r.topic == topics.EVENTS]
        assert on_topic == [row.body.encode() for row in history]  # the stored body, byte for byte

    results = {o.message_id: o for o in outcomes}
    on_results = reader.json_for(first, topics.COMMAND_RESULTS) + reader.json_for(second, topics.COMMAND_RESULTS)
    assert sorted(r["command_id"] for r in on_results) == sorted(str(m) for m in results)
    for r in on_results:
        assert r["message_id"] == json.loads(result_json(results[uuid.UUID(r["command_id"])].result))["message_id"]
    with_reply_to = {str(o.message_id) for o in outcomes if o.reply_to == reply_topic}
    replied = [r for r in reader.records if r.topic == reply_topic and r.key in (_key(first), _key(second))]
    assert sorted(json.loads(r.value)["command_id"] for r in replied) == sorted(with_reply_to)
    assert len(with_reply_to) == 4
    assert await counts(engine) == stored  # marked, never deleted


# ---- the hand-off from this process's committed batches ---------------------------------------
def _count_reads(relay: OutboxRelay) -> list[int]:
    """Every read round the relay makes from now on (one entry per round)."""
    reads: list[int] = []
    read = relay._round

    async def counted(*args: Any) -> int:
        reads.append(1)
        return await read(*args)

    relay._round = counted  # type: ignore[method-assign]
    return reads


async def test_a_leading_relay_publishes_what_this_process_committed_without_reading_it_back(
    engine: AsyncEngine, broker: AIOKafkaProducer, reader: TopicReader,
) -> None:
    before = new_id()
    await _handle(engine, _create(before))
    async with relaying(engine, Publish(broker), poll=30) as r:  # no poll during the test
        await reader.wait_for(before, 1, topic=topics.EVENTS)  # its first round has read this
        reads = _count_reads(r.relay)
        ticket, agent = new_id(), staff()
        batches = [[_create(ticket)],
                   [AddReply(actor=agent, payload={"ticket_id": ticket, "reply_id": uuid.uuid4(), "body": "Hi"}),
                    UpdateTicket(actor=agent, payload={"ticket_id": ticket, "title": "Renamed"})],
                   [ChangeStatus(actor=agent, payload={"ticket_id": ticket, "status": "in_progress"})]]
        for batch in batches:
            outcomes = await handle_batch([incoming(c) for c in batch], SqlUnitOfWork(engine, r.relay))
            assert all(o.status == "accepted" for o in outcomes)
        history = await _history(engine, ticket)
        published = await reader.wait_for(ticket, len(history), topic=topics.EVENTS, timeout=10)
        results = await reader.wait_for(ticket, 4, topic=topics.COMMAND_RESULTS, timeout=10)
        await eventually(lambda: _all_published(engine), what="the progress stored")
        assert reads == []  # no NOTIFY, no read: the rows came from the committing batches
    assert [e["event_id"] for e in published] == [str(row.event_id) for row in history]
    assert [e["ticket_version"] for e in published] == list(range(1, len(history) + 1))
    assert len(history) >= 4 and len(results) == 4


class _LostLead:
    """A relay that led when the batch wrote its rows and no longer does once it has committed."""

    leading = True

    def hand_off(self, events: list[dict[str, Any]], results: list[dict[str, Any]]) -> bool:
        return False


async def test_a_hand_off_refused_after_the_commit_notifies_whichever_relay_leads(
    engine: AsyncEngine, broker: AIOKafkaProducer, reader: TopicReader,
) -> None:
    before = new_id()
    await _handle(engine, _create(before))
    async with relaying(engine, Publish(broker), poll=30) as r:  # only a NOTIFY wakes it in time
        await reader.wait_for(before, 1, topic=topics.EVENTS)
        reads = _count_reads(r.relay)
        ticket = new_id()
        await handle_batch([incoming(_create(ticket))], SqlUnitOfWork(engine, _LostLead()))
        assert [e["ticket_version"] for e in await reader.wait_for(ticket, 1, topic=topics.EVENTS, timeout=10)] == [1]
        assert reads  # it read them, woken by the NOTIFY sent after the commit


# ---- failover --------------------------------------------------------------------------------
async def test_only_one_relay_is_active_and_the_other_takes_over_what_remains(
    engine: AsyncEngine, broker: AIOKafkaProducer, reader: TopicReader,
) -> None:
    async with relaying(engine, Publish(broker)) as a, relaying(engine, Publish(broker)) as b:
        await eventually(lambda: a.relay.active or b.relay.active, what="a relay to become active")
        leader, follower = (a, b) if a.relay.active else (b, a)
        assert not follower.relay.active

        done = new_id()
        await _handle(engine, _create(done))
        await reader.wait_for(done, 1, topic=topics.EVENTS)
        await eventually(lambda: _all_published(engine), what="the leader to mark its rows")
        assert follower.publish.calls == [] and not follower.relay.active

        leader.publish.set("hold")  # the leader sends the next round but is never acknowledged
        remaining, sent = [new_id() for _ in range(3)], len(leader.publish.calls)
        await _handle(engine, *map(_create, remaining))
        await eventually(lambda: len(leader.publish.calls) >= sent + 3, what="the leader to send the new events")
        assert await unpublished(engine) == (3, 3)
        await leader.stop()

        await eventually(lambda: follower.relay.active, what="the follower to take over")
        await eventually(lambda: _all_published(engine), what="the follower to publish what remained")
        assert follower.publish.acked_keys(topics.EVENTS) == {_key(i) for i in remaining}
        assert follower.publish.acked_keys(topics.COMMAND_RESULTS) == {_key(i) for i in remaining}
        for ticket_id in remaining:  # acknowledged by the broker; the reader's consumer may still be fetching them
            assert [e["ticket_version"] for e in await reader.wait_for(ticket_id, 1, topic=topics.EVENTS)] == [1]
        assert leader.history[-1] is False and not leader.relay.active
    assert await count(engine, t.ticket_events) == 4 and await count(engine, t.processed_commands) == 4


async def test_a_new_leader_resumes_from_the_stored_progress_without_sending_anything_again(
    engine: AsyncEngine, broker: AIOKafkaProducer, reader: TopicReader,
) -> None:
    before = [new_id() for _ in range(3)]
    await _handle(engine, *map(_create, before))
    async with relaying(engine, Publish(broker)):
        for ticket_id in before:
            await reader.wait_for(ticket_id, 1, topic=topics.EVENTS)
        await eventually(lambda: _all_published(engine), what="the first leader to store its progress")

    after = [new_id() for _ in range(2)]
    await _handle(engine, *map(_create, after))
    second = Publish(broker)
    async with relaying(engine, second):
        for ticket_id in after:
            await reader.wait_for(ticket_id, 1, topic=topics.EVENTS)
        await eventually(lambda: _all_published(engine), what="the second leader to store its progress")
    assert {key for _, key in second.calls} == {_key(i) for i in after}, "nothing of the first leader's again"
    async with engine.connect() as conn:
        stored = {row.outbox: (row.max_seen, row.holes) for row in await conn.execute(select(t.relay_progress))}
    assert stored == {"ticket_events": (5, []), "processed_commands": (5, [])}


async def test_when_the_active_relay_loses_its_connection_a_relay_resumes(
    engine: AsyncEngine, broker: AIOKafkaProducer, reader: TopicReader,
) -> None:
    async with relaying(engine, Publish(broker)) as a, relaying(engine, Publish(broker)) as b:
        await eventually(lambda: a.relay.active or b.relay.active, what="a relay to become active")
        leader = a if a.relay.active else b
        async with engine.connect() as conn:  # end the leader's session: its advisory lock goes with it
            terminated = (await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND objid = :key AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ), {"key": RELAY_LOCK_KEY})).scalars().all()
        assert terminated == [True]
        await eventually(lambda: False in leader.history, what="the leader to notice")

        after = new_id()
        await _handle(engine, _create(after))
        await reader.wait_for(after, 1, topic=topics.EVENTS)
        await eventually(lambda: _all_published(engine), what="the rows to be marked")
        assert [a.relay.active, b.relay.active].count(True) == 1


# ---- broker trouble --------------------------------------------------------------------------
async def test_a_broker_outage_is_retried_and_nothing_unacknowledged_is_marked(
    engine: AsyncEngine, broker: AIOKafkaProducer, reader: TopicReader,
) -> None:
    publish = Publish(broker)
    publish.set("down")
    ticket_ids = [new_id(), new_id()]
    await _handle(engine, *map(_create, ticket_ids))
    async with relaying(engine, publish) as running:
        await eventually(lambda: publish.failures >= 3, what="several failed attempts")
        assert await unpublished(engine) == (2, 2) and publish.acked == []
        await eventually(lambda: not running.relay.active, what="the relay not to claim to be active as it backs off")

        # Events are acknowledged again, results are not: a round is marked only when every send of
        # it is acknowledged, so nothing is marked (the events go out again next round: at least once).
        publish.set("no_ack", no_ack_topics=frozenset({topics.COMMAND_RESULTS}))
        failures = publish.failures
        await eventually(lambda: publish.failures >= failures + 3, what="results failing to be acknowledged")
        assert await unpublished(engine) == (2, 2)
        assert publish.acked_keys(topics.EVENTS) == set(map(_key, ticket_ids))
        assert publish.acked_keys(topics.COMMAND_RESULTS) == set()

        publish.set("up")
        await eventually(lambda: _all_published(engine), what="the rows to be published once the broker is back")
    for ticket_id in ticket_ids:
        assert len(await reader.wait_for(ticket_id, 1, topic=topics.COMMAND_RESULTS)) == 1
    assert publish.acked_keys(topics.COMMAND_RESULTS) == set(map(_key, ticket_ids))


async def test_rows_are_marked_only_after_every_acknowledgement(
    engine: AsyncEngine, broker: AIOKafkaProducer, reader: TopicReader,
) -> None:
    publish = Publish(broker)
    publish.set("hold")
    ticket_ids = [new_id() for _ in range(4)]
    await _handle(engine, *map(_create, ticket_ids))
    async with relaying(engine, publish):
        await eventually(lambda: len(publish.calls) >= 4, what="the relay to send the events")
        assert await unpublished(engine) == (4, 4)

        publish.set("up")
        await eventually(lambda: _all_published(engine), what="the rows to be marked once acknowledged")
    assert publish.acked_keys(topics.EVENTS) == set(map(_key, ticket_ids))


# ---- transactions -----------------------------------------------------------------------------
async def test_rolled_back_work_is_never_published_and_work_committed_late_still_is(
    engine: AsyncEngine, broker: AIOKafkaProducer, reader: TopicReader,
) -> None:
    late_id, doomed_id, early_id, last_id = new_id(), new_id(), new_id(), new_id()
    publish = Publish(broker)
    async with relaying(engine, publish):
        late, doomed = HeldUnitOfWork(engine), HeldUnitOfWork(engine)
        late_task = asyncio.create_task(handle_batch([incoming(_create(late_id))], late))
        doomed_task = asyncio.create_task(handle_batch([incoming(_create(doomed_id))], doomed))
        await asyncio.wait_for(asyncio.gather(late.at_commit.wait(), doomed.at_commit.wait()), 10)

        await _handle(engine, _create(early_id))  # commits after the held ones took lower seq numbers
        await reader.wait_for(early_id, 1, topic=topics.EVENTS)
        await eventually(lambda: _all_published(engine), what="the committed rows to be marked")

        doomed.release(fail=True)
        with pytest.raises(InjectedFailure):
            await doomed_task
        late.release()
        await late_task
        await _handle(engine, _create(last_id))

        await reader.wait_for(late_id, 1, topic=topics.EVENTS)
        await reader.wait_for(last_id, 1, topic=topics.EVENTS)
        await eventually(lambda: _all_published(engine), what="every committed row to be marked")

    assert (_key(doomed_id)) not in {key for _, key in publish.calls}
    assert reader.json_for(doomed_id) == []
    assert await _history(engine, doomed_id) == []


async def test_notify_wakes_the_relay_long_before_the_poll_interval(
    engine: AsyncEngine, broker: AIOKafkaProducer, reader: TopicReader,
) -> None:
    async with relaying(engine, Publish(broker), poll=60.0) as running:
        await eventually(lambda: running.relay.active, what="the relay to become active")
        warm_up = new_id()
        await _handle(engine, _create(warm_up))
        await eventually(lambda: _all_published(engine), timeout=20, what="the first rows to be marked")
        # The relay has finished that round and now waits: only a NOTIFY (or 60 s) wakes it.

        woken = new_id()
        await _handle(engine, _create(woken))
        await reader.wait_for(woken, 1, topic=topics.EVENTS, timeout=20)
        await reader.wait_for(woken, 1, topic=topics.COMMAND_RESULTS, timeout=20)


async def test_an_undeliverable_reply_to_does_not_hold_back_other_results(
    engine: AsyncEngine, kafka_bootstrap: str, reader: TopicReader, reply_topic: str,
) -> None:
    """A client names a reply topic the broker refuses (here an invalid name; with topic auto-creation
    off, as in docker-compose.yml, any missing topic): its result still goes to the results topic,
    and the results after it are not blocked behind it for ever."""
    broker = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=2_000)  # how long the broker gets to refuse
    await broker.start()
    try:
        bad, good = new_id(), new_id()
        await _handle(engine, _create(bad), reply_to="no such topic!")
        await _handle(engine, _create(good), reply_to=reply_topic)
        async with relaying(engine, Publish(broker)):
            await reader.wait_for(good, 1, topic=reply_topic)
            await eventually(lambda: _all_published(engine), what="every row marked")
        assert len(reader.json_for(bad, topics.COMMAND_RESULTS)) == 1
        assert len(reader.json_for(good, topics.COMMAND_RESULTS)) == 1
    finally:
        await broker.stop()


async def test_the_relay_never_copies_a_result_to_a_reply_to_outside_the_pattern(
    engine: AsyncEngine, broker: AIOKafkaProducer, reader: TopicReader, reply_topic: str,
) -> None:
    """The pattern is checked when producing, not only when the command arrived: a reply_to stored
    under a wider pattern gets no copy once the pattern is narrowed."""
    narrowed, allowed = new_id(), new_id()
    await _handle(engine, _create(narrowed), reply_to=reply_topic)
    await _handle(engine, _create(allowed), reply_to=reply_topic)
    async with relaying(engine, Publish(broker), reply_topics=ReplyTopics("partner\\.inbox")):
        await reader.wait_for(allowed, 1, topic=topics.COMMAND_RESULTS)
        await eventually(lambda: _all_published(engine), what="every row marked")
    assert len(reader.json_for(narrowed, topics.COMMAND_RESULTS)) == 1, "the result itself is published"
    assert reader.json_for(narrowed, reply_topic) == [] and reader.json_for(allowed, reply_topic) == []


# ---- headers and trace context ----------------------------------------------------------------
async def test_every_event_and_result_carries_its_headers_and_the_stored_trace_context(
    engine: AsyncEngine, broker: AIOKafkaProducer, reader: TopicReader, reply_topic: str,
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    traced, plain = new_id(), new_id()
    outcomes = await _handle(engine, _create(traced), _create(plain), reply_to=reply_topic)
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    async with engine.begin() as conn:  # as the command path stores it for a command that had one
        for table in (t.ticket_events, t.processed_commands):
            await conn.execute(table.update().where(table.c.ticket_id == traced)
                               .values(traceparent=traceparent, tracestate="vendor=1"))
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    dsn = _asyncpg_dsn(engine.url.render_as_string(hide_password=False))
    relay = OutboxRelay(dsn, Publish(broker), MetricsReports(Metrics()), batch_size=500, poll_interval_s=0.2, tracer_provider=provider)
    task = asyncio.create_task(relay.run())
    try:
        await reader.wait_for(traced, 2)
        await reader.wait_for(plain, 2)
        await eventually(lambda: _all_published(engine), what="every row marked published")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    by_command = {o.message_id: o for o in outcomes}
    records = [r for r in reader.records if r.key in (_key(traced), _key(plain))]
    assert {r.topic for r in records} == {topics.EVENTS, topics.COMMAND_RESULTS, reply_topic}
    for record in records:
        headers = dict(record.headers)
        body = json.loads(record.value)
        assert headers["correlation_id"].decode() == body["correlation_id"]
        assert headers["causation_id"].decode() == body["causation_id"]
        assert uuid.UUID(body["causation_id"]) in by_command
        assert headers["type"].decode() == body["type"]
        assert headers["content-type"] == b"application/json"
        if record.key == _key(traced):
            assert headers["traceparent"].decode() == traceparent and headers["tracestate"] == b"vendor=1"
        else:
            assert "traceparent" not in headers
    spans = exporter.get_finished_spans()
    per_message = [s for s in spans if s.name.endswith(" publish") and s.name != "outbox publish"]
    rounds = [s for s in spans if s.name == "outbox publish"]
    in_trace = [s for s in per_message if s.context.trace_id == int(trace_id, 16)]
    assert len(in_trace) == 2 and all(s.parent.span_id == int(traceparent[36:52], 16) for s in in_trace)
    assert {s.context.trace_id for s in per_message} - {int(trace_id, 16)} <= {r.context.trace_id for r in rounds}
    assert any(link.context.trace_id == int(trace_id, 16) for s in rounds for link in s.links)


async def test_the_relay_commits_its_marks_asynchronously_and_nothing_else_does(
    engine: AsyncEngine, broker: AIOKafkaProducer,
) -> None:
    """A lost mark is a republish (at least once, same event_id); a lost command would be data loss."""
    dsn = _asyncpg_dsn(engine.url.render_as_string(hide_password=False))
    relay = OutboxRelay(dsn, Publish(broker), MetricsReports(Metrics()), batch_size=10, poll_interval_s=1.0)
    conn = await relay.connect()
    try:
        assert await conn.fetchval("SHOW synchronous_commit") == "off"
    finally:
        await conn.close()
    async with engine.connect() as commands:
        assert await commands.scalar(text("SHOW synchronous_commit")) == "on"
