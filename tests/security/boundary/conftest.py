"""The attack tests get a broker, a database and a service instance of their own (like the fault
tests), so hostile records never reach the other layers' consumers — and their logs are captured,
rendered both as console text and as JSON, from before the service starts."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr
from ticket_contracts import topics
from ticket_contracts.client import TicketClient

from service.app import running
from service.devstack import EmbeddedKafka, ensure_topics
from service.logging import configure_logging
from service.runtime import Runtime
from tests.e2e.conftest import e2e_settings
from tests.support.infra import migrated_database
from tests.support.streams import TopicReader

#: In the settings of the service under attack; no log may ever show it.
JWT_SECRET_MARKER = "jwt-secret-marker-7c1d0e5a9b3f48e2a6d4"


@dataclass
class CapturedLogs:
    console: io.StringIO
    json: io.StringIO

    def text(self) -> str:
        return self.console.getvalue() + "\n" + self.json.getvalue()


@pytest.fixture(scope="package")
def logs() -> Iterator[CapturedLogs]:
    """Everything the service logs, through the production set-up, in both renderers at DEBUG."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    streams = []
    handlers = []
    for fmt in ("console", "json"):
        configure_logging(fmt, "DEBUG")
        handler = root.handlers[0]
        stream = io.StringIO()
        handler.setStream(stream)  # type: ignore[attr-defined]
        streams.append(stream)
        handlers.append(handler)
    root.handlers[:] = handlers
    yield CapturedLogs(*streams)
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


@pytest.fixture(scope="package")
def attack_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    kafka = EmbeddedKafka(log_dir=tmp_path_factory.mktemp("security-broker"))
    kafka.start()
    yield kafka.bootstrap
    kafka.stop()


@pytest.fixture(scope="package")
async def attack_database(database_server_url: str) -> AsyncIterator[str]:
    async with migrated_database(database_server_url) as url:
        yield url


@pytest.fixture(scope="package")
async def service(logs: CapturedLogs, attack_broker: str, attack_database: str) -> AsyncIterator[Runtime]:
    await ensure_topics(attack_broker, partitions=2)
    settings = e2e_settings(attack_database, attack_broker, auth_jwt_secret=SecretStr(JWT_SECRET_MARKER))
    async with running(settings) as rt:
        yield rt


@pytest.fixture(scope="package")
async def client(attack_broker: str, service: Runtime) -> AsyncIterator[TicketClient]:
    async with TicketClient(attack_broker, timeout=30.0) as c:
        yield c


@pytest.fixture(scope="package")
async def output(attack_broker: str, service: Runtime) -> AsyncIterator[TopicReader]:
    reader = TopicReader(attack_broker, topics.EVENTS, topics.COMMAND_RESULTS, *topics.DLQ_TOPICS)
    await reader.start()
    yield reader
    await reader.stop()
