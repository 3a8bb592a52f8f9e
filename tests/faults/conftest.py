"""Fault scenarios get a broker and a database of their own, so crashing services and
duplicate publishing never disturb the other layers' tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.devstack import EmbeddedKafka, ensure_topics
from service.migrate import upgrade
from tests.support.infra import create_database, drop_database


@dataclass
class Stack:
    database_url: str
    bootstrap: str
    log_dir: Path


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    kafka = EmbeddedKafka(log_dir=tmp_path)
    kafka.start()
    yield kafka
    kafka.stop()


@pytest.fixture
async def stack(database_server_url: str, own_broker: EmbeddedKafka, tmp_path: Path) -> AsyncIterator[Stack]:
    await ensure_topics(own_broker.bootstrap, partitions=4)
    url = await create_database(database_server_url)
    await asyncio.to_thread(upgrade, url)
    yield Stack(url, own_broker.bootstrap, tmp_path)
    await drop_database(database_server_url, url)
