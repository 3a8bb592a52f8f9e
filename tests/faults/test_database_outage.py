"""PostgreSQL goes away mid-stream: commands wait and are retried with backoff, never skipped;
when it comes back everything is handled exactly once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from ticket_contracts import topics

from service.adapters import tables as t
from service.app import running
from service.devstack import EmbeddedKafka, EmbeddedPostgres, ensure_topics
from service.migrate import upgrade
from tests.e2e.conftest import e2e_settings
from tests.support.streams import TopicReader
from tests.support.waiting import eventually
from tests.support.workload import check_event_stream, interleaved_commands


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres()
    pg.start(tmp_path, ephemeral=True)
    yield pg
    pg.stop()


async def test_database_outage_is_retried_until_it_ends(own_postgres: EmbeddedPostgres,
                                                       own_broker: EmbeddedKafka) -> None:
    url = own_postgres.url
    await asyncio.to_thread(upgrade, url)
    await ensure_topics(own_broker.bootstrap, partitions=4)
    commands = interleaved_commands(tickets=20, total=300, agents=[uuid.uuid4()], seed=3)
    before, during = commands[:100], commands[100:]
    engine = create_async_engine(url, pool_pre_ping=True)
    reader = await TopicReader(own_broker.bootstrap, topics.EVENTS, topics.COMMAND_RESULTS,
                               topics.dlq(topics.COMMANDS)).start()
    producer = AIOKafkaProducer(bootstrap_servers=own_broker.bootstrap)
    await producer.start()
    try:
        async with running(e2e_settings(url, own_broker.bootstrap)) as rt:
            await _produce(producer, before)
            await eventually(lambda: _count(engine, len(before)), what="first burst handled")
            await engine.dispose()
            own_postgres.halt()
            await _produce(producer, during)
            await eventually(lambda: rt.metrics.total(rt.metrics.retries, "command batch") > 0,
                             what="the outage noticed and retried")
            own_postgres.resume()
            await eventually(lambda: _count(engine, len(commands)), timeout=90, what="every command handled")
            await eventually(lambda: len({r.value for r in reader.records if r.topic == topics.COMMAND_RESULTS})
                             >= len(commands), timeout=60, what="every result published")

        async with engine.connect() as conn:
            versions = dict((await conn.execute(select(t.tickets.c.id, t.tickets.c.version))).all())
            inbox = (await conn.execute(select(func.count()).select_from(t.processed_commands))).scalar_one()
        assert inbox == len(commands)
        check_event_stream([r for r in reader.records if r.topic == topics.EVENTS], versions)
        assert not [r for r in reader.records if r.topic == topics.dlq(topics.COMMANDS)], "nothing dead-lettered"
    finally:
        await producer.stop()
        await reader.stop()
        await engine.dispose()


async def _produce(producer: AIOKafkaProducer, commands: list) -> None:
    for command in commands:
        await producer.send(topics.COMMANDS, command.model_dump_json().encode(),
                            key=str(command.payload.ticket_id).encode())
    await producer.flush()


async def _count(engine, at_least: int) -> bool:
    try:
        async with engine.connect() as conn:
            n = (await conn.execute(select(func.count()).select_from(t.processed_commands))).scalar_one()
    except Exception:  # the database may still be coming back
        return False
    return n >= at_least
