"""Idempotent topic creation through the Kafka admin API (works on Kafka and on Tansu)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ticket_contracts.topics import ALL_TOPICS

if TYPE_CHECKING:
    from ticket_contracts.kafka_security import KafkaSecurity

_log = logging.getLogger("tickets.devstack")
_TOPIC_ALREADY_EXISTS = 36  # Kafka error code; a concurrent creator won the race


async def ensure_topics(
    bootstrap: str,
    topics: Iterable[str] = ALL_TOPICS,
    partitions: int = 8,
    replication_factor: int = 1,
    security: KafkaSecurity | None = None,
) -> None:
    """Create every missing topic; topics that already exist are left as they are."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(security.client_kwargs() if security else {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if not missing:
            return
        response = await admin.create_topics([NewTopic(t, partitions, replication_factor) for t in missing])
        failed = [e for e in response.topic_errors if e[1] not in (0, _TOPIC_ALREADY_EXISTS)]
        if failed:
            raise RuntimeError(f"could not create topics on {bootstrap}: {failed}")
        _log.info("created topics: %s", ", ".join(missing))
    finally:
        await admin.close()
