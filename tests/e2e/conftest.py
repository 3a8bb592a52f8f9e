"""One service instance for the e2e session, a client, readers of its output and a user seeder."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from ticket_contracts import topics
from ticket_contracts.client import TicketClient
from ticket_contracts.users import UserUpserted, UserUpsertedPayload

from service.adapters import tables
from service.app import running
from service.runtime import Runtime
from service.settings import Settings, load_settings
from tests.support.streams import TopicReader
from tests.support.waiting import eventually


def e2e_settings(database_url: str, kafka_bootstrap: str, **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        database_url=database_url, kafka_bootstrap=kafka_bootstrap, http_port=0,
        consumer_group=f"e2e-{uuid.uuid4().hex[:8]}", heartbeat_interval_s=1.0, relay_poll_interval_s=0.5,
        retry_max_backoff_s=1.0, monitor_interval_s=0.3,
    )
    return load_settings(**(values | overrides))


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """Every span the session's service finished (the in-memory exporter of OpenTelemetry's SDK)."""
    return InMemorySpanExporter()


@pytest.fixture(scope="session")
async def service(database_url: str, kafka_bootstrap: str, spans: InMemorySpanExporter) -> AsyncIterator[Runtime]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    async with running(e2e_settings(database_url, kafka_bootstrap), tracer_provider=provider) as rt:
        yield rt


@pytest.fixture(scope="session")
async def client(kafka_bootstrap: str, service: Runtime) -> AsyncIterator[TicketClient]:
    async with TicketClient(kafka_bootstrap, timeout=30.0) as c:
        yield c


@pytest.fixture(scope="session")
async def output(kafka_bootstrap: str, service: Runtime) -> AsyncIterator[TopicReader]:
    """Everything on the events, results and DLQ topics, keyed as published."""
    reader = TopicReader(kafka_bootstrap, topics.EVENTS, topics.COMMAND_RESULTS, *topics.DLQ_TOPICS, topics.OPS)
    await reader.start()
    yield reader
    await reader.stop()


class Directory:
    """Publishes users to users.events.v1 and waits until the service's replica has them."""

    def __init__(self, client: TicketClient, database_url: str) -> None:
        self._client = client
        self._engine = create_async_engine(database_url)

    async def add(self, role: str, *, customer_id: uuid.UUID | None = None, active: bool = True,
                  email: str | None = None, user_id: uuid.UUID | None = None) -> UserUpsertedPayload:
        payload = UserUpsertedPayload(
            user_id=user_id or uuid.uuid4(), email=email or f"{uuid.uuid4().hex[:10]}@example.test",
            role=role, customer_id=customer_id, active=active,  # type: ignore[arg-type]
        )
        event = UserUpserted(occurred_at=datetime.now(UTC), payload=payload)
        await self._client.publish(event, topics.USER_EVENTS, key=payload.user_id, reply=False)
        await eventually(lambda: self._has(payload.user_id, active), what=f"user {payload.user_id} replicated")
        return payload

    async def _has(self, user_id: uuid.UUID, active: bool) -> bool:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(tables.users.c.active).where(tables.users.c.user_id == user_id))).first()
        return row is not None and row.active == active

    async def close(self) -> None:
        await self._engine.dispose()


@pytest.fixture(scope="session")
async def directory(client: TicketClient, database_url: str) -> AsyncIterator[Directory]:
    d = Directory(client, database_url)
    yield d
    await d.close()
