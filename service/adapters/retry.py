"""Transient failures (database or broker unreachable, serialization failures, deadlocks) are
retried in place with capped exponential backoff — never skipped, never hot-looping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from service.logging import get_logger

T = TypeVar("T")
log = get_logger(__name__)

_TRANSIENT_PG = (
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.QueryCanceledError,
    asyncpg.InterfaceError,
)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, IntegrityError):
        return False
    if isinstance(error, (OperationalError, InterfaceError)):
        return True
    if isinstance(error, DBAPIError):
        return bool(error.connection_invalidated) or isinstance(getattr(error.orig, "__cause__", None), _TRANSIENT_PG) or \
            isinstance(error.orig, _TRANSIENT_PG)
    if isinstance(error, KafkaError):
        return bool(error.retriable) or isinstance(error, (KafkaConnectionError, KafkaTimeoutError))
    return isinstance(error, (*_TRANSIENT_PG, OSError, TimeoutError, ConnectionError))


async def retry_transient(
    action: Callable[[], Awaitable[T]], *, what: str, initial: float, maximum: float,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Run ``action`` until it succeeds or fails with a non-transient error."""
    delay = initial
    while True:
        try:
            return await action()
        except Exception as error:
            if not is_transient(error):
                raise
            log.warning("transient failure, retrying", what=what, error=type(error).__name__, retry_in_s=delay)
            if on_retry:
                on_retry(error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, maximum)
