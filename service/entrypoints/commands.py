"""The ``tickets.commands.v1`` subscriber: batches in, results and events out via the outbox.

Per fetched batch: decode (bad records → DLQ), handle in one transaction (transient faults
retried in place), re-send stored results of duplicates, dead-letter commands that crashed,
then — only then — commit the offsets. Acknowledgement is manual: ACK_FIRST would be
at-most-once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from faststream.kafka import KafkaRouter
from sqlalchemy.exc import DBAPIError, IntegrityError
from ticket_contracts import topics
from ticket_contracts.commands import Command

from service.adapters.retry import retry_transient
from service.adapters.unit_of_work import SqlUnitOfWork
from service.handlers.batch import Incoming, Outcome, handle_batch
from service.logging import get_logger
from service.runtime import Runtime

from .acking import ack_after, batch_subscription, documented_per_record
from .decoding import Letter, decode_command, split_decoded
from .dead_letters import DeadLetters

log = get_logger(__name__)
CONFLICT_MESSAGE = "the command conflicts with data already stored (e.g. a reused reply_id or entry_id)"


def command_router(rt: Runtime) -> KafkaRouter:
    s = rt.settings
    router = KafkaRouter()
    dead_letters = DeadLetters(rt.broker, rt.metrics)

    @router.subscriber(topics.COMMANDS, **batch_subscription(
        rt, topics.COMMANDS, "commands", "Commands, keyed by ticket id; one result per distinct message_id."))
    @documented_per_record(Command)
    async def on_commands(body: list[Command]) -> None:
        records: tuple[Any, ...] = body  # type: ignore[assignment]  # raw records, see raw_records
        await ack_after(rt, lambda: _on_commands(records), what="commands")

    async def _on_commands(records: tuple[Any, ...]) -> None:
        started = time.perf_counter()
        decoded, dead = split_decoded(records, lambda r: decode_command(r, rt.resolver, s.max_message_bytes))
        sources = [record for record, _ in decoded]
        items: list[Incoming] = [item for _, item in decoded]
        outcomes = await _handle(rt, items) if items else []
        crashed = [(record, type(o.error).__name__, str(o.error)[:500])
                   for record, o in zip(sources, outcomes, strict=True) if o.status == "failed"]
        await retry_transient(lambda: _send_out(rt, dead_letters, dead + crashed, outcomes), what="publish",
                              initial=s.retry_initial_backoff_s, maximum=s.retry_max_backoff_s)
        _account(rt, items, outcomes, len(records), time.perf_counter() - started)

    return router


async def _handle(rt: Runtime, items: list[Incoming]) -> list[Outcome]:
    s = rt.settings

    async def attempt(batch: list[Incoming]) -> list[Outcome]:
        return await retry_transient(
            lambda: handle_batch(batch, SqlUnitOfWork(rt.engine)), what="command batch",
            initial=s.retry_initial_backoff_s, maximum=s.retry_max_backoff_s,
            on_retry=lambda e: rt.metrics.count(rt.metrics.retries, "command batch"),
        )

    try:
        return await attempt(items)
    except DBAPIError as error:  # not transient (those were retried): find the command that causes it
        log.warning("batch failed in the database, handling its commands one by one", size=len(items),
                    error=type(error.orig).__name__)
    outcomes = []
    for item in items:
        try:
            outcomes.extend(await attempt([item]))
        except IntegrityError:
            try:  # a concurrent instance may have just handled it: the inbox will say so
                outcomes.extend(await attempt([item]))
            except IntegrityError:
                item.invalid, item.invalid_reason = CONFLICT_MESSAGE, "conflict"
                outcomes.extend(await attempt([item]))
        except DBAPIError as error:  # e.g. text PostgreSQL cannot store: this one command is poison
            outcomes.append(Outcome(item.message_id, None, item.reply_to, item.ticket_id, "failed", error=error))
    return outcomes


async def _send_out(rt: Runtime, dead_letters: DeadLetters, dead: list[Letter],
                    outcomes: list[Outcome]) -> None:
    """Dead letters and the re-sent results of duplicates; the reply_to copies are best effort,
    like the relay's: a client's topic that the broker refuses must not stall the partition."""
    futures, copies = [], []
    for o in outcomes:
        if o.status != "duplicate" or o.result is None:
            continue
        key = str(o.ticket_id).encode() if o.ticket_id else None
        futures.append(await rt.broker.publish(o.result.encode(), topics.COMMAND_RESULTS, key=key, no_confirm=True))
        if o.reply_to:
            copies.append(rt.broker.publish(o.result.encode(), o.reply_to, key=key))
    await dead_letters.send_many(dead)
    if futures:
        await asyncio.gather(*futures)
    for topic_error in await asyncio.gather(*copies, return_exceptions=True):
        if isinstance(topic_error, Exception):
            log.warning("re-sent result not delivered to its reply_to topic", error=type(topic_error).__name__)


def _account(rt: Runtime, items: list[Incoming], outcomes: list[Outcome], size: int, seconds: float) -> None:
    """Metrics, and one log line per command: ids only, never bodies or tokens."""
    m = rt.metrics
    debug = logging.getLogger(__name__).isEnabledFor(logging.DEBUG)
    for item, o in zip(items, outcomes, strict=True):
        m.count(m.commands, o.status)
        if o.status == "accepted" and not debug:
            continue
        (log.debug if o.status == "accepted" else log.info)(
            "command handled", outcome=o.status, reason=o.reason, command_type=item.command_type,
            message_id=str(item.message_id), correlation_id=str(item.correlation_id),
            ticket_id=str(o.ticket_id) if o.ticket_id else None,
            actor_id=str(item.actor.user_id) if item.actor else None,
        )
    m.batch_seconds.observe(seconds)
    m.batch_size.observe(size)
