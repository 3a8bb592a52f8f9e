"""Prometheus metrics and the counters the heartbeat reports; one registry per service instance.

Every metric is named ``tickets_*`` and listed in docs/operations.md; deploy/ holds alert rules and
a Grafana dashboard over them (a test checks that they name only metrics that exist here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, Histogram, Info, PlatformCollector
from prometheus_client import ProcessCollector

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def service_version() -> str:
    """The one source of the version: the installed package's metadata (pyproject.toml)."""
    try:
        return version("ticket-service")
    except PackageNotFoundError:  # pragma: no cover - running from a tree that was never installed
        return "0+unknown"


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        Info("tickets_build", "Version of the running service", registry=r).info({"version": service_version()})
        self.commands = Counter("tickets_commands", "Commands handled, by outcome", ["outcome"], registry=r)
        self.queries = Counter("tickets_queries", "Queries answered, by outcome", ["outcome"], registry=r)
        self.query_seconds = Histogram("tickets_query_seconds", "Time to answer one query, by query type",
                                       ["query_type"], buckets=_LATENCY, registry=r)
        self.dead_letters = Counter("tickets_dead_letters", "Messages sent to a DLQ, by source topic and error class",
                                    ["topic", "error_class"], registry=r)
        self.auth_failures = Counter("tickets_auth_failures", "Commands and queries whose actor token was refused, "
                                     "by reason", ["reason"], registry=r)
        self.rate_limited = Counter(
            "tickets_rate_limited", "Commands refused by a rate limit (mails opening too many tickets)", ["command"],
            registry=r,
        )
        self.retries = Counter("tickets_transient_retries", "Transient failures retried", ["what"], registry=r)
        self.batch_seconds = Histogram("tickets_command_batch_seconds", "Time to handle one batch", registry=r)
        self.batch_size = Histogram(
            "tickets_command_batch_size", "Commands per batch", buckets=(1, 5, 20, 50, 100, 200, 500), registry=r
        )
        self.published = Counter("tickets_relay_published", "Outbox rows published", ["kind"], registry=r)
        self.relay_publish_seconds = Histogram(
            "tickets_relay_publish_seconds", "One relay round: publishing its rows until the broker acknowledged all",
            buckets=_LATENCY, registry=r)
        self.outbox_backlog = Gauge("tickets_outbox_backlog", "Unpublished outbox rows", registry=r)
        self.outbox_oldest_age = Gauge("tickets_outbox_oldest_unpublished_age_seconds",
                                       "Age of the oldest unpublished event or result (0 when none waits)", registry=r)
        self.relay_active = Gauge("tickets_relay_active", "1 when this instance runs the relay", registry=r)
        self.consumer_lag = Gauge(
            "tickets_consumer_lag", "Records not yet handled: high-water mark of the last fetch minus the committed "
            "offset, per assigned partition", ["group", "topic", "partition"], registry=r)
        self.rebalances = Counter("tickets_consumer_rebalances", "Partition assignments received, by consumer group",
                                  ["group"], registry=r)
        self.commit_failures = Counter(
            "tickets_offset_commit_failures", "Offset commits refused (e.g. during a rebalance); the records are "
            "handled again by the partition's next owner and the inbox makes that a no-op", ["group"], registry=r)

    def count(self, counter: Counter, label: str, n: int = 1) -> None:
        counter.labels(label).inc(n)

    def total(self, counter: Counter, *labels: str) -> int:
        return int(sum(counter.labels(label)._value.get() for label in labels))

    def total_of(self, counter: Counter) -> int:
        """The sum over every label set of a counter."""
        return int(sum(sample.value for metric in counter.collect() for sample in metric.samples
                       if sample.name.endswith("_total")))
