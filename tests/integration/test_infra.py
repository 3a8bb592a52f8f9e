"""The test fixtures give real, working servers."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.infra import create_database, fresh_topics
from ticket_contracts.topics import ALL_TOPICS, COMMANDS

TIMEOUT_S = 30


async def _scalar(url: str, sql: str) -> object:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(text(sql))
    finally:
        await engine.dispose()


async def test_database_server_answers(database_server_url: str) -> None:
    assert await _scalar(database_server_url, "select 1") == 1


async def test_create_database_makes_a_fresh_database(database_server_url: str) -> None:
    url = await create_database(database_server_url)

    assert await _scalar(url, "select current_database()") == make_url(url).database
    assert url != await create_database(database_server_url)


async def test_database_url_is_migrated_to_head(database_url: str) -> None:
    from service.migrate import head_revision

    assert await _scalar(database_url, "select version_num from alembic_version") == head_revision()


async def test_every_topic_exists(kafka_bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert set(ALL_TOPICS) <= set(await admin.list_topics())
    finally:
        await admin.close()


async def test_message_round_trips_and_its_offset_is_committed(kafka_bootstrap: str) -> None:
    group, payload = f"test-infra-{uuid.uuid4().hex}", uuid.uuid4().bytes
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    consumer = AIOKafkaConsumer(
        COMMANDS,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    await producer.start()
    await consumer.start()
    try:
        sent = await producer.send_and_wait(COMMANDS, payload, key=b"ticket-1")
        async with asyncio.timeout(TIMEOUT_S):
            received = await consumer.getone()
            while received.value != payload:  # other tests may share the topic
                received = await consumer.getone()
        assert (received.partition, received.offset) == (sent.partition, sent.offset)

        partition = TopicPartition(COMMANDS, received.partition)
        await consumer.commit({partition: received.offset + 1})

        assert await consumer.committed(partition) == received.offset + 1
        assert await _committed_by_group(kafka_bootstrap, group, partition) == received.offset + 1
    finally:
        await consumer.stop()
        await producer.stop()


async def _committed_by_group(bootstrap: str, group: str, partition: TopicPartition) -> int | None:
    """The group's committed offset as another client (the admin API) sees it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[partition])
    finally:
        await admin.close()
    return offsets[partition].offset if partition in offsets else None


async def test_fresh_topics_are_unique_copies(kafka_bootstrap: str) -> None:
    first = await fresh_topics(kafka_bootstrap, [COMMANDS])
    second = await fresh_topics(kafka_bootstrap, [COMMANDS])

    assert first[COMMANDS] != second[COMMANDS]
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        assert {first[COMMANDS], second[COMMANDS]} <= set(await admin.list_topics())
    finally:
        await admin.close()


async def test_embedded_postgres_takes_settings_that_need_a_restart(tmp_path: Path) -> None:
    from service.devstack import EmbeddedPostgres

    pg = EmbeddedPostgres(database="postgres")
    await asyncio.to_thread(pg.start, tmp_path, ephemeral=True)
    try:
        assert await _scalar(pg.url, "show shared_buffers") != "64MB"  # initdb's pick (128MB where memory allows)
        await asyncio.to_thread(pg.configure, {"shared_buffers": "64MB"})

        assert await _scalar(pg.url, "show shared_buffers") == "64MB"
    finally:
        await asyncio.to_thread(pg.stop)
