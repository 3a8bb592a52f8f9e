"""Manual acknowledgement shared by the batch subscribers.

Offsets are committed only after a batch's work is done (its transaction committed, its
dead letters and re-sent results acknowledged by the broker). If the work fails in a way the
handlers did not absorb, the batch is rewound (nack seeks back) after a pause and handled
again — never skipped, never hot-looping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka.errors import KafkaError
from faststream.middlewares import AckPolicy

from service.logging import get_logger
from service.runtime import Runtime

from .lag import Rebalances

log = get_logger(__name__)


def batch_subscription(rt: Runtime, topic: str, group: str, description: str, *,
                       wait_ms: int | None = None) -> dict[str, Any]:
    """The subscription every input uses: batches, its own consumer group starting at the earliest
    offset, manual acknowledgement (never ACK_FIRST), raw records, no automatic reply, and
    rebalances counted (see :mod:`.lag`). ``wait_ms``: this subscriber's fetch wait and pause after
    an empty poll, instead of the low-latency ``fetch_max_wait_ms`` / ``batch_timeout_ms``."""
    settings = rt.settings
    group_id = f"{settings.consumer_group}.{group}"
    return dict(
        group_id=group_id, listener=Rebalances(group_id, rt.metrics, rt.progress), batch=True, max_records=settings.batch_max_records,
        batch_timeout_ms=wait_ms or settings.batch_timeout_ms, fetch_max_wait_ms=wait_ms or settings.fetch_max_wait_ms,
        auto_offset_reset="earliest", ack_policy=AckPolicy.MANUAL, parser=tolerant_headers, decoder=raw_records,
        no_reply=True,  # the handlers publish what they answer; FastStream would also send their None
        title=topic, description=description,
    )


async def tolerant_headers(records: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream's batch parser decodes every header as UTF-8 and fails on a binary or null value,
    which would drop the whole batch unprocessed. Then it parses copies with readable headers, and
    the handler still gets the untouched records (their headers go to a DLQ exactly as they came)."""
    try:
        return await original(records)
    except (UnicodeDecodeError, AttributeError):
        readable = tuple(dataclasses.replace(r, headers=[(k, (v or b"").decode(errors="replace").encode())
                                                         for k, v in r.headers]) for r in records)
        parsed = await original(readable)
        parsed.raw_message = records
        return parsed


H = TypeVar("H", bound=Callable[..., Any])


def documented_per_record(record_type: Any) -> Callable[[H], H]:
    """Document a batch handler by ONE record: FastStream writes a handler's parameter type into
    asyncapi.yaml, and ours receive a batch of raw records (see :func:`raw_records`), which it would
    document as an array — but on the wire every Kafka record is one ``record_type`` object. Placed
    under ``@router.subscriber``, so FastStream reads this signature; with ``apply_types=False`` the
    annotation documents only, it converts nothing."""

    def document(handler: H) -> H:
        parameter = inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=record_type)
        handler.__signature__ = inspect.Signature([parameter], return_annotation=None)  # type: ignore[attr-defined]
        return handler

    return document


async def raw_records(msg: Any, original: Any = None) -> Any:
    """Decoder that hands the handler the raw ConsumerRecords; we decode them ourselves."""
    return msg.raw_message


async def ack_after(rt: Runtime, work: Callable[[], Awaitable[None]], *, what: str) -> None:
    message = rt.broker.context.get_local("message")
    if rt.fetch_waits is not None:
        rt.fetch_waits.saw_batch(message.consumer)
    try:
        await work()
    except Exception as error:
        log.exception("batch failed unexpectedly; rewinding to handle it again", what=what,
                      error=type(error).__name__)
        await asyncio.sleep(rt.settings.retry_max_backoff_s)
        await message.nack()
        return
    try:
        await message.ack()
    except KafkaError as error:
        # Typically CommitFailedError: the group rebalanced while the batch was handled, so these
        # partitions may belong to another instance now. Nothing is wrong: the effects are committed in
        # the database, the next owner reads the records again and the inbox makes them no-ops.
        group = getattr(message.consumer, "_group_id", None) or what
        rt.metrics.commit_failures.labels(group).inc()
        log.warning("offset commit refused; the partition's next owner re-reads these records (no-ops)",
                    what=what, group=group, error=type(error).__name__)
        return
    rt.progress.committed(message.raw_message)
