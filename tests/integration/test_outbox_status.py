"""`tickets outbox status` on a database of its own: the backlog, the age of the oldest unpublished
row, and who holds the relay lock (nobody, then a session named like the relay's)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from sqlalchemy import text

from service.adapters.relay import RELAY_LOCK_KEY
from service.app import _asyncpg_dsn
from service.ops.outbox import RELAY_APPLICATION_PREFIX, outbox_status
from service.settings import load_settings

from .uow_helpers import migrated_engine


async def test_backlog_age_and_relay_holder(database_server_url: str) -> None:
    async with migrated_engine(database_server_url) as engine:
        url = engine.url.render_as_string(hide_password=False)
        settings = load_settings(database_url=url)
        old = datetime.now(UTC) - timedelta(minutes=5)
        async with engine.begin() as conn:
            for version in (1, 2, 3, 4):
                await conn.execute(text(
                    "INSERT INTO ticket_events (event_id, ticket_id, ticket_version, type, internal, occurred_at, body)"
                    " VALUES (:e, :t, :v, 'ticket.created', false, :at, '{}')"),
                    {"e": uuid.uuid4(), "t": uuid.UUID(int=1), "v": version, "at": old + timedelta(seconds=version)})
            # The relay got to seq 3 but has not seen seq 2 yet (a late transaction's row): 2 and 4 wait.
            await conn.execute(text("UPDATE relay_progress SET max_seen = 3, holes = '{2}' "
                                    "WHERE outbox = 'ticket_events'"))

        status = await outbox_status(settings)
        assert (status.events.rows, status.results.rows, status.history_rows) == (2, 0, 4)
        assert status.events.oldest == old + timedelta(seconds=2)
        age = status.events.age(status.now)
        assert age is not None and timedelta(minutes=4) < age < timedelta(minutes=6)
        assert status.relay is None

        relay = await asyncpg.connect(_asyncpg_dsn(url, application_name=f"{RELAY_APPLICATION_PREFIX}instance-7"))
        try:
            assert await relay.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK_KEY)
            held = await outbox_status(settings)
        finally:
            await relay.close()
        assert held.relay is not None and held.relay.instance_id == "instance-7"
        assert held.as_json()["relay"]["instance_id"] == "instance-7"
        assert held.as_json()["events"]["rows"] == 2
