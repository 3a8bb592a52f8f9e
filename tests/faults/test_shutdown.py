"""Shutdown is bounded by TICKETS_SHUTDOWN_TIMEOUT_S also while PostgreSQL is down: the batch in hand
is abandoned (nothing of it committed, its offsets neither), so after a restart every command is
handled exactly once — nothing lost, nothing doubled. A stopping instance never takes the relay."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from ticket_contracts import topics

from service.adapters import tables as t
from service.app import create_app, running
from service.devstack import EmbeddedKafka, EmbeddedPostgres, ensure_topics
from service.migrate import upgrade
from tests.e2e.conftest import e2e_settings
from tests.support.streams import TopicReader
from tests.support.waiting import eventually
from tests.support.workload import check_event_stream, interleaved_commands

from .test_database_outage import _count, _produce

TIMEOUT_S = 6.0


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """Not under tmp_path: PostgreSQL runs as its own user, which must reach the data directory, and
    pytest's shared base directory may be cleaned up by another session meanwhile."""
    scratch = Path(tempfile.mkdtemp(prefix="tickets-shutdown-test-"))
    scratch.chmod(0o755)
    pg = EmbeddedPostgres()
    pg.start(scratch, ephemeral=True)
    yield pg
    pg.stop()
    shutil.rmtree(scratch, ignore_errors=True)


async def test_shutdown_with_the_database_down_is_bounded_and_loses_or_doubles_nothing(
    own_postgres: EmbeddedPostgres, own_broker: EmbeddedKafka,
) -> None:
    url = own_postgres.url
    await asyncio.to_thread(upgrade, url)
    await ensure_topics(own_broker.bootstrap, partitions=4)
    commands = interleaved_commands(tickets=10, total=120, agents=[uuid.uuid4()], seed=5)
    before, during = commands[:40], commands[40:]
    engine = create_async_engine(url, pool_pre_ping=True)
    reader = await TopicReader(own_broker.bootstrap, topics.EVENTS, topics.COMMAND_RESULTS).start()
    producer = AIOKafkaProducer(bootstrap_servers=own_broker.bootstrap)
    await producer.start()
    settings = e2e_settings(url, own_broker.bootstrap, shutdown_timeout_s=TIMEOUT_S)
    try:
        app, rt = create_app(settings)
        await app.start()
        await _produce(producer, before)
        await eventually(lambda: _count(engine, len(before)), what="first burst handled")
        await engine.dispose()
        own_postgres.halt()
        await _produce(producer, during)
        await eventually(lambda: rt.metrics.total(rt.metrics.retries, "command batch") > 0,
                         what="a batch in hand, retrying against the dead database")
        started = time.monotonic()
        await app.stop()
        took = time.monotonic() - started
        print(f"shutdown with the database down took {took:.1f}s (budget {TIMEOUT_S}s)")
        assert took <= TIMEOUT_S + 1.5, f"shutdown took {took:.1f}s"
        assert rt.stopping and not rt.relay_active and not rt.ready

        own_postgres.resume()
        async with running(settings):
            await eventually(lambda: _count(engine, len(commands)), timeout=90, what="every command handled")
            await eventually(lambda: len({r.value for r in reader.records if r.topic == topics.COMMAND_RESULTS})
                             >= len(commands), timeout=60, what="every result published")
        async with engine.connect() as conn:
            versions = dict((await conn.execute(select(t.tickets.c.id, t.tickets.c.version))).all())
            inbox = (await conn.execute(select(func.count()).select_from(t.processed_commands))).scalar_one()
        assert inbox == len(commands)
        check_event_stream([r for r in reader.records if r.topic == topics.EVENTS], versions)
    finally:
        await producer.stop()
        await reader.stop()
        await engine.dispose()


async def test_a_stopping_instance_never_takes_the_relay(stack) -> None:  # type: ignore[no-untyped-def]
    first_app, first = create_app(e2e_settings(stack.database_url, stack.bootstrap, instance_id="first"))
    await first_app.start()
    try:
        await eventually(lambda: first.relay_active, what="the first instance relays")
        group = first.settings.consumer_group
        async with running(e2e_settings(stack.database_url, stack.bootstrap, instance_id="second",
                                        consumer_group=group)) as second:
            assert not second.relay_active
            second.stopping = True  # what its shutdown sets first
            await first_app.stop()  # the lock is free now
            # The relay tries the lock every 2 × poll interval (0.5 s here): give it many chances.
            deadline = time.monotonic() + 4.0
            while time.monotonic() < deadline:
                assert not second.relay_active, "a stopping instance took the relay"
                await asyncio.sleep(0.1)
    finally:
        await first_app.stop()
