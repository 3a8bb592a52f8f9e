"""Session-wide PostgreSQL and Kafka for every test layer (see :mod:`tests.support.infra`)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from types import FrameType

import pytest

from service.devstack import ensure_topics
from tests.support.infra import create_database, database_server, drop_database, kafka_server

# Settings built by tests run in trust mode unless a test says otherwise: the service itself refuses
# to start without an explicit TICKETS_AUTH_MODE.
os.environ.setdefault("TICKETS_AUTH_MODE", "trust")


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM (e.g. from a CI timeout) ends the run like Ctrl-C, so the servers are still stopped."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def database_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server; make databases on it with ``create_database``."""
    with database_server() as url:
        yield url


@pytest.fixture(scope="session")
async def database_url(database_server_url: str) -> AsyncIterator[str]:
    """A fresh database for this session, migrated to head."""
    from service.migrate import upgrade

    url = await create_database(database_server_url)
    await asyncio.to_thread(upgrade, url)  # Alembic runs its own event loop
    yield url
    await drop_database(database_server_url, url)


@pytest.fixture(scope="session")
async def kafka_bootstrap() -> AsyncIterator[str]:
    """Bootstrap address of a broker on which every topic of the service exists."""
    with kafka_server() as bootstrap:
        await ensure_topics(bootstrap)
        yield bootstrap
