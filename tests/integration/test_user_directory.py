"""The user-directory replica on real PostgreSQL: idempotent, ordered by ``occurred_at``, and fed
by the real ``users.events.v1`` consumer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from ticket_contracts import UserDeactivated, UserUpserted, topics

from service.adapters import tables as t
from service.adapters.auth import ActorResolver
from service.adapters.user_directory import apply_user_changes
from service.entrypoints.broker import TicketBroker
from service.entrypoints.user_events import user_events_router
from service.metrics import Metrics
from service.runtime import Runtime
from service.settings import load_settings
from tests.support.infra import fresh_topics
from tests.support.waiting import eventually

from .uow_helpers import migrated_engine

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def engine(database_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(database_server_url) as engine:
        yield engine


def _upsert(user_id: uuid.UUID, at: datetime, **changes: Any) -> dict[str, Any]:
    return {"user_id": user_id, "email": "ann@example.test", "display_name": "Ann", "role": "agent",
            "customer_id": None, "active": True, "updated_at": at} | changes


async def _rows(engine: AsyncEngine) -> dict[uuid.UUID, dict[str, Any]]:
    async with engine.connect() as conn:
        return {r.user_id: dict(r._mapping) for r in await conn.execute(select(t.users))}


async def _row(engine: AsyncEngine, user_id: uuid.UUID) -> dict[str, Any] | None:
    return (await _rows(engine)).get(user_id)


async def test_the_same_upsert_twice_gives_the_same_row(engine: AsyncEngine) -> None:
    user_id = uuid.uuid4()
    event = _upsert(user_id, T0, role="customer", customer_id=uuid.uuid4(), display_name="Ann A.")

    await apply_user_changes(engine, [event], [])
    first = await _rows(engine)
    await apply_user_changes(engine, [event], [])

    assert await _rows(engine) == first
    assert first[user_id] == event


async def test_a_newer_upsert_replaces_every_column(engine: AsyncEngine) -> None:
    user_id = uuid.uuid4()
    await apply_user_changes(engine, [_upsert(user_id, T0)], [])
    newer = _upsert(user_id, T0 + timedelta(seconds=1), email="ann@new.test", display_name="Ann B",
                    role="admin", active=False)

    await apply_user_changes(engine, [newer], [])

    assert await _row(engine, user_id) == newer


async def test_an_older_upsert_redelivered_after_a_newer_one_changes_nothing(engine: AsyncEngine) -> None:
    user_id = uuid.uuid4()
    older, newer = _upsert(user_id, T0, role="agent"), _upsert(user_id, T0 + timedelta(minutes=1), role="admin")

    await apply_user_changes(engine, [older], [])
    await apply_user_changes(engine, [newer], [])
    await apply_user_changes(engine, [older], [])

    assert await _row(engine, user_id) == newer


async def test_deactivation_marks_the_user_inactive(engine: AsyncEngine) -> None:
    user_id, other = uuid.uuid4(), uuid.uuid4()
    await apply_user_changes(engine, [_upsert(user_id, T0), _upsert(other, T0)], [])
    at = T0 + timedelta(hours=1)

    await apply_user_changes(engine, [], [(user_id, at)])
    await apply_user_changes(engine, [], [(user_id, at)])  # redelivered

    row = await _row(engine, user_id)
    assert row == _upsert(user_id, T0) | {"active": False, "updated_at": at}
    assert (await _row(engine, other))["active"] is True  # type: ignore[index]


async def test_an_older_deactivation_or_upsert_after_a_newer_change_changes_nothing(engine: AsyncEngine) -> None:
    user_id = uuid.uuid4()
    reactivated = _upsert(user_id, T0 + timedelta(hours=2), display_name="Back")
    await apply_user_changes(engine, [_upsert(user_id, T0)], [])
    await apply_user_changes(engine, [], [(user_id, T0 + timedelta(hours=1))])
    await apply_user_changes(engine, [reactivated], [])

    await apply_user_changes(engine, [], [(user_id, T0 + timedelta(hours=1))])  # the deactivation again
    await apply_user_changes(engine, [_upsert(user_id, T0, active=False)], [])  # an older upsert again

    assert await _row(engine, user_id) == reactivated


async def test_a_deactivation_newer_than_a_redelivered_upsert_keeps_the_user_inactive(engine: AsyncEngine) -> None:
    user_id = uuid.uuid4()
    deactivated_at = T0 + timedelta(hours=1)
    await apply_user_changes(engine, [_upsert(user_id, T0)], [(user_id, deactivated_at)])

    await apply_user_changes(engine, [_upsert(user_id, T0)], [])

    assert await _row(engine, user_id) == _upsert(user_id, T0) | {"active": False, "updated_at": deactivated_at}


async def test_one_batch_keeps_the_newest_change_whatever_its_order(engine: AsyncEngine) -> None:
    user_id, other = uuid.uuid4(), uuid.uuid4()
    newest = _upsert(user_id, T0 + timedelta(seconds=3), display_name="third")
    upserts = [newest, _upsert(user_id, T0 + timedelta(seconds=1), display_name="first"),
               _upsert(other, T0 + timedelta(seconds=5))]

    deactivations = [(user_id, T0 + timedelta(seconds=2)), (other, T0 + timedelta(seconds=6))]

    await apply_user_changes(engine, upserts, deactivations)

    rows = await _rows(engine)
    assert rows[user_id] == newest  # the deactivation at 2 s is older than the upsert at 3 s
    assert (rows[other]["active"], rows[other]["updated_at"]) == (False, T0 + timedelta(seconds=6))


async def test_a_deactivation_of_an_unknown_user_creates_nothing(engine: AsyncEngine) -> None:
    await apply_user_changes(engine, [], [(uuid.uuid4(), T0)])

    assert await _rows(engine) == {}


# ---- through the real consumer --------------------------------------------------------------
async def test_the_consumer_applies_user_events_in_order_and_idempotently(
    engine: AsyncEngine, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A topic of our own: a fresh consumer group on the shared topic would replay every other test's events.
    topic = (await fresh_topics(kafka_bootstrap, [topics.USER_EVENTS]))[topics.USER_EVENTS]
    monkeypatch.setattr(topics, "USER_EVENTS", topic)
    settings = load_settings(kafka_bootstrap=kafka_bootstrap, consumer_group=f"test-users-{uuid.uuid4().hex[:8]}",
                             retry_initial_backoff_s=0.05, retry_max_backoff_s=0.5)
    broker = TicketBroker(kafka_bootstrap, apply_types=False)
    rt = Runtime(settings, broker, Metrics(), ActorResolver("trust"))
    rt.engine = engine
    broker.include_router(user_events_router(rt))

    user_id, sentinel, customer_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    created = UserUpserted(occurred_at=T0, payload={"user_id": user_id, "email": "Carl@Example.test",
                                                    "role": "customer", "customer_id": customer_id})
    renamed = UserUpserted(occurred_at=T0 + timedelta(minutes=1), payload={
        "user_id": user_id, "email": "carl@example.test", "display_name": "Carl", "role": "customer",
        "customer_id": customer_id})
    deactivated = UserDeactivated(occurred_at=T0 + timedelta(minutes=2), payload={"user_id": user_id})
    last = UserUpserted(occurred_at=T0, payload={"user_id": sentinel, "email": "s@example.test", "role": "agent"})
    # Redeliveries of older events follow the newer ones; the sentinel, on the same partition, comes last.
    sequence = [created, renamed, deactivated, created, renamed, deactivated, renamed, last]

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    await broker.start()
    try:
        for event in sequence:
            await producer.send_and_wait(topic, event.model_dump_json().encode(), key=str(user_id).encode())
        await eventually(lambda: _row(engine, sentinel), what="the consumer to reach the last event")
    finally:
        await broker.stop()
        await producer.stop()

    rows = await _rows(engine)
    assert rows[user_id] == {"user_id": user_id, "email": "carl@example.test", "display_name": "Carl",
                             "role": "customer", "customer_id": customer_id, "active": False,
                             "updated_at": T0 + timedelta(minutes=2)}
    assert set(rows) == {user_id, sentinel}
