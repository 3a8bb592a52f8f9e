"""``tickets outbox status``: unpublished events and results (by the progress the relay stores in
``relay_progress``), the age of the oldest, and which instance relays — the holder of the relay's
advisory lock, read from PostgreSQL itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.adapters.relay import RELAY_LOCK_KEY, unpublished
from service.settings import Settings

#: The relay names its database session ``<prefix><instance id>`` (see service.app).
RELAY_APPLICATION_PREFIX = "tickets-relay "


class OpsError(ValueError):
    """A request the tools refuse (a forbidden or missing topic, nothing selected)."""


@dataclass(frozen=True)
class Backlog:
    rows: int
    oldest: datetime | None

    def age(self, now: datetime) -> timedelta | None:
        return now - self.oldest if self.oldest else None


@dataclass(frozen=True)
class RelayHolder:
    pid: int
    application_name: str
    client_addr: str | None
    backend_start: datetime | None

    @property
    def instance_id(self) -> str | None:
        name = self.application_name
        return name.removeprefix(RELAY_APPLICATION_PREFIX) if name.startswith(RELAY_APPLICATION_PREFIX) else None


@dataclass(frozen=True)
class OutboxStatus:
    now: datetime
    events: Backlog
    results: Backlog
    history_rows: int
    last_seq: int | None
    relay: RelayHolder | None

    def as_json(self) -> dict[str, Any]:
        def backlog(b: Backlog) -> dict[str, Any]:
            age = b.age(self.now)
            return {"rows": b.rows, "oldest": b.oldest.isoformat() if b.oldest else None,
                    "oldest_age_s": round(age.total_seconds(), 3) if age is not None else None}

        relay = None
        if self.relay is not None:
            relay = {"instance_id": self.relay.instance_id, "application_name": self.relay.application_name,
                     "pid": self.relay.pid, "client_addr": self.relay.client_addr,
                     "since": self.relay.backend_start.isoformat() if self.relay.backend_start else None}
        return {"at": self.now.isoformat(), "events": backlog(self.events), "results": backlog(self.results),
                "history_rows": self.history_rows, "last_seq": self.last_seq, "relay": relay}


_EVENTS_BACKLOG = text(f"""
    SELECT count(*) AS rows, min(occurred_at) AS oldest
      FROM ticket_events WHERE {unpublished("ticket_events")}""")
_RESULTS_BACKLOG = text(f"""
    SELECT count(*) AS rows, min(processed_at) AS oldest
      FROM processed_commands WHERE {unpublished("processed_commands")}""")
_HISTORY = text("SELECT count(*) AS rows, max(seq) AS last_seq FROM ticket_events")
#: A one-bigint advisory lock shows as classid = high 32 bits, objid = low 32 bits, objsubid = 1.
_RELAY_HOLDER = text("""
    SELECT a.pid, a.application_name, host(a.client_addr) AS client_addr, a.backend_start
      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
       AND l.classid::bigint = (CAST(:key AS bigint) >> 32)
       AND l.objid::bigint = (CAST(:key AS bigint) & 4294967295)
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())""")


def engine_for(settings: Settings) -> AsyncEngine:
    return create_async_engine(settings.database_url, pool_size=1, max_overflow=0)


async def outbox_status(settings: Settings) -> OutboxStatus:
    engine = engine_for(settings)
    try:
        async with engine.connect() as conn:
            now = (await conn.execute(text("SELECT now()"))).scalar_one()
            events = (await conn.execute(_EVENTS_BACKLOG)).one()
            results = (await conn.execute(_RESULTS_BACKLOG)).one()
            history = (await conn.execute(_HISTORY)).one()
            holder = (await conn.execute(_RELAY_HOLDER, {"key": RELAY_LOCK_KEY})).first()
    finally:
        await engine.dispose()
    relay = RelayHolder(holder.pid, holder.application_name or "", holder.client_addr, holder.backend_start) \
        if holder is not None else None
    return OutboxStatus(now, Backlog(events.rows, events.oldest), Backlog(results.rows, results.oldest),
                        history.rows, history.last_seq, relay)
