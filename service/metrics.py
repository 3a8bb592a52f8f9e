"""Prometheus metrics and the counters the heartbeat reports; one registry per service instance."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.commands = Counter("tickets_commands", "Commands handled, by outcome", ["outcome"], registry=r)
        self.queries = Counter("tickets_queries", "Queries answered, by outcome", ["outcome"], registry=r)
        self.dead_letters = Counter("tickets_dead_letters", "Messages sent to a DLQ", ["topic"], registry=r)
        self.retries = Counter("tickets_transient_retries", "Transient failures retried", ["what"], registry=r)
        self.batch_seconds = Histogram("tickets_command_batch_seconds", "Time to handle one batch", registry=r)
        self.batch_size = Histogram(
            "tickets_command_batch_size", "Commands per batch", buckets=(1, 5, 20, 50, 100, 200, 500), registry=r
        )
        self.published = Counter("tickets_relay_published", "Outbox rows published", ["kind"], registry=r)
        self.outbox_backlog = Gauge("tickets_outbox_backlog", "Unpublished outbox rows", registry=r)
        self.auth_failures = Counter(
            "tickets_auth_failures", "Actor tokens refused (jwt mode), by reason", ["reason"], registry=r
        )
        self.relay_active = Gauge("tickets_relay_active", "1 when this instance runs the relay", registry=r)

    def count(self, counter: Counter, label: str, n: int = 1) -> None:
        counter.labels(label).inc(n)

    def total(self, counter: Counter, *labels: str) -> int:
        return int(sum(counter.labels(label)._value.get() for label in labels))
