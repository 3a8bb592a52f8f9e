"""Manual acknowledgement shared by the batch subscribers.

Offsets are committed only after a batch's work is done (its transaction committed, its
dead letters and re-sent results acknowledged by the broker). If the work fails in a way the
handlers did not absorb, the batch is rewound (nack seeks back) after a pause and handled
again — never skipped, never hot-looping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from service.logging import get_logger
from service.runtime import Runtime

log = get_logger(__name__)


async def raw_records(msg: Any, original: Any = None) -> Any:
    """Decoder that hands the handler the raw ConsumerRecords; we decode them ourselves."""
    return msg.raw_message


async def ack_after(rt: Runtime, work: Callable[[], Awaitable[None]], *, what: str) -> None:
    message = rt.broker.context.get_local("message")
    try:
        await work()
    except Exception as error:
        log.exception("batch failed unexpectedly; rewinding to handle it again", what=what,
                      error=type(error).__name__)
        await asyncio.sleep(rt.settings.retry_max_backoff_s)
        await message.nack()
        return
    await message.ack()
