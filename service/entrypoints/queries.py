"""The ``tickets.queries.v1`` subscriber: request/reply; the answer goes to ``reply_to``."""

from __future__ import annotations

from typing import Any

from faststream.kafka import KafkaRouter
from faststream.middlewares import AckPolicy
from ticket_contracts import topics
from ticket_contracts.queries import Query

from service.runtime import Runtime

from .acking import ack_after, raw_records
from .dead_letters import DeadLetters


def query_router(rt: Runtime) -> KafkaRouter:
    s = rt.settings
    router = KafkaRouter()
    dead_letters = DeadLetters(rt.broker, rt.metrics)

    @router.subscriber(
        topics.QUERIES, group_id=f"{s.consumer_group}.queries", batch=True, max_records=s.batch_max_records,
        batch_timeout_ms=s.batch_timeout_ms, fetch_max_wait_ms=s.fetch_max_wait_ms,
        auto_offset_reset="earliest", ack_policy=AckPolicy.MANUAL, decoder=raw_records,
        title="tickets.queries.v1", description="Queries; the answer goes to the reply_to header's topic.",
    )
    async def on_queries(body: list[Query]) -> None:
        records: tuple[Any, ...] = body  # type: ignore[assignment]
        await ack_after(rt, lambda: dead_letters.send_many(
            [(r, "NotImplemented", "queries are not served yet") for r in records]), what="queries")

    return router
