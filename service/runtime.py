"""Process-wide resources of one service instance, filled in by the lifespan (never at import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from faststream.kafka import KafkaBroker
from opentelemetry.trace import NoOpTracerProvider, TracerProvider
from sqlalchemy.ext.asyncio import AsyncEngine

from service.adapters.auth import ActorResolver
from service.adapters.reply_topics import ReplyTopics
from service.entrypoints.lag import Progress
from service.metrics import Metrics
from service.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    broker: KafkaBroker
    metrics: Metrics
    resolver: ActorResolver
    _engine: AsyncEngine | None = None
    #: The query side's own read-only pool (service.adapters.read_models.read_pool), once started.
    read_pool: asyncpg.Pool | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ready: bool = False
    relay_active: bool = False
    #: This process's relay, when it runs here (not in a process of its own): committed batches hand
    #: it their outbox rows while it leads (service.adapters.unit_of_work.OutboxHandoff).
    outbox_handoff: Any = None
    #: Set when shutdown begins: readiness goes, the relay is released and never taken again.
    stopping: bool = False
    tracer_provider: TracerProvider = field(default_factory=NoOpTracerProvider)
    progress: Progress = field(default_factory=Progress)
    lag_monitor: Any = None  # service.entrypoints.lag.LagMonitor, once started
    fetch_waits: Any = None  # service.entrypoints.fetch_waits.FetchWaits, once started
    shutdown_deadline: float | None = None  # event-loop time by which shutdown must be done
    reply_topics: ReplyTopics = field(init=False)

    def __post_init__(self) -> None:
        self.reply_topics = ReplyTopics(self.settings.reply_to_pattern)

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the database engine is not started yet")
        return self._engine

    @engine.setter
    def engine(self, engine: AsyncEngine | None) -> None:
        self._engine = engine
