"""Where the tests' PostgreSQL and Kafka come from, in order of preference.

1. ``TICKETS_TEST_DATABASE_URL`` / ``TICKETS_TEST_KAFKA_BOOTSTRAP``: servers you run yourself.
2. ``TICKETS_TEST_TESTCONTAINERS=1`` with a reachable Docker engine: throwaway containers.
3. Otherwise the embedded servers of :mod:`service.devstack` (no Docker needed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from service.devstack import EmbeddedKafka, EmbeddedPostgres, ensure_topics
from service.devstack import create_database as create_named_database
from ticket_contracts.topics import ALL_TOPICS

_log = logging.getLogger("tests.infra")
POSTGRES_IMAGE = "postgres:16"


def use_testcontainers() -> bool:
    """Containers were asked for and a Docker engine answers."""
    if os.environ.get("TICKETS_TEST_TESTCONTAINERS") != "1":
        return False
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:  # no engine, no socket, no permission: all mean "use the embedded servers"
        _log.warning("TICKETS_TEST_TESTCONTAINERS=1 but Docker is unavailable (%s); using embedded servers", exc)
        return False
    return True


@contextmanager
def database_server() -> Iterator[str]:
    """Yield a SQLAlchemy (asyncpg) URL of a PostgreSQL server for the whole session."""
    if url := os.environ.get("TICKETS_TEST_DATABASE_URL"):
        yield url
    elif use_testcontainers():
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers < 4.14
            from testcontainers.postgres import PostgresContainer

        with PostgresContainer(POSTGRES_IMAGE, driver="asyncpg") as container:
            yield container.get_connection_url()
    else:
        scratch = Path(tempfile.mkdtemp(prefix="tickets-test-"))
        server = EmbeddedPostgres(database="postgres")
        try:
            server.start(scratch, ephemeral=True)
            yield server.url
        finally:
            server.stop()
            shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def kafka_server() -> Iterator[str]:
    """Yield the bootstrap address of a Kafka-compatible broker for the whole session."""
    if bootstrap := os.environ.get("TICKETS_TEST_KAFKA_BOOTSTRAP"):
        yield bootstrap
    elif use_testcontainers():
        try:
            from testcontainers.community.kafka import KafkaContainer
        except ImportError:  # testcontainers < 4.14
            from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
    else:
        scratch = Path(tempfile.mkdtemp(prefix="tickets-test-kafka-"))
        broker = EmbeddedKafka(log_dir=scratch)
        try:
            broker.start()
            yield broker.bootstrap
        finally:
            broker.stop()
            shutil.rmtree(scratch, ignore_errors=True)


def unique_suffix() -> str:
    return uuid.uuid4().hex[:12]


async def create_database(server_url: str) -> str:
    """Create a fresh, uniquely named database and return its SQLAlchemy (asyncpg) URL."""
    return await create_named_database(server_url, f"tickets_test_{unique_suffix()}")


async def drop_database(server_url: str, database_url: str) -> None:
    """Drop the database of ``database_url``, disconnecting anyone still using it."""
    name = make_url(database_url).database
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'drop database if exists "{name}" with (force)'))
    finally:
        await engine.dispose()


async def fresh_topics(
    bootstrap: str, topics: Iterable[str] = ALL_TOPICS, partitions: int = 2
) -> dict[str, str]:
    """Create a uniquely suffixed copy of ``topics``; return a map from each name to its copy."""
    suffix = unique_suffix()
    copies = {topic: f"{topic}.{suffix}" for topic in topics}
    await ensure_topics(bootstrap, copies.values(), partitions=partitions)
    return copies


@asynccontextmanager
async def migrated_database(server_url: str) -> AsyncIterator[str]:
    """A fresh database migrated to head for the block, dropped afterwards."""
    from service.migrate import upgrade

    url = await create_database(server_url)
    try:
        await asyncio.to_thread(upgrade, url)  # Alembic runs its own event loop
        yield url
    finally:
        await drop_database(server_url, url)
