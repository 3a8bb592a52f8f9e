"""The ``users.events.v1`` subscriber: keeps the user-directory replica, in order, idempotently."""

from __future__ import annotations

import functools
from typing import Any

from faststream.kafka import KafkaRouter
from pydantic import ValidationError
from ticket_contracts import topics
from ticket_contracts.users import UserDeactivated, UserErased, UserEvent, UserUpserted, user_event_adapter

from service.adapters.erasure import erased_among
from service.adapters.retry import retry_transient
from service.adapters.user_directory import apply_user_changes
from service.runtime import Runtime

from .acking import ack_after, batch_subscription, documented_per_record
from .dead_letters import DeadLetters
from .decoding import DeadLetter, summarise
from .erasure import erase


def user_events_router(rt: Runtime) -> KafkaRouter:
    s = rt.settings
    router = KafkaRouter()
    dead_letters = DeadLetters(rt.broker, rt.metrics)

    @router.subscriber(topics.USER_EVENTS, **batch_subscription(
        rt, topics.USER_EVENTS, "user_events", "User directory changes from the identity service, keyed by user id.",
        wait_ms=s.user_events_fetch_wait_ms))
    @documented_per_record(UserEvent)
    async def on_user_events(body: list[UserEvent]) -> None:
        records: tuple[Any, ...] = body  # type: ignore[assignment]
        await ack_after(rt, lambda: _apply(records), what="user events")

    async def _apply(records: tuple[Any, ...]) -> None:
        upserts: list[dict[str, Any]] = []
        deactivations: list[Any] = []
        erasures: list[UserErased] = []
        dead: list[DeadLetter] = []
        for record in records:
            if record.value is None or len(record.value) > s.max_message_bytes:
                dead.append(DeadLetter(record, "MessageTooLarge", f"limit {s.max_message_bytes} bytes"))
                continue
            try:
                event = user_event_adapter.validate_json(record.value)
            except ValidationError as error:
                dead.append(DeadLetter(record, "InvalidUserEvent", summarise(error)))
                continue
            if isinstance(event, UserUpserted):
                p = event.payload
                upserts.append({"user_id": p.user_id, "email": p.email, "display_name": p.display_name,
                                "role": p.role.value, "customer_id": p.customer_id, "active": p.active,
                                "updated_at": event.occurred_at})
            elif isinstance(event, UserDeactivated):
                deactivations.append((event.payload.user_id, event.occurred_at))
            elif isinstance(event, UserErased):
                erasures.append(event)

        async def apply() -> None:  # an erased user's later upserts never bring the address back
            erased = await erased_among(rt.engine, list({row["user_id"] for row in upserts}))
            await apply_user_changes(rt.engine, [row for row in upserts if row["user_id"] not in erased],
                                     deactivations)

        await retry_transient(apply, what="user events", initial=s.retry_initial_backoff_s,
                              maximum=s.retry_max_backoff_s)
        for erasure in erasures:  # in order; each resumable (see entrypoints/erasure.py)
            await retry_transient(functools.partial(erase, rt, erasure), what="user erasure",
                                  initial=s.retry_initial_backoff_s, maximum=s.retry_max_backoff_s)
        await retry_transient(lambda: dead_letters.send_many(dead), what="dlq",
                              initial=s.retry_initial_backoff_s, maximum=s.retry_max_backoff_s)

    return router
