"""The ``tickets.commands.v1`` subscriber: decode, call the bus, send, acknowledge.

Per fetched batch: decode (bad records → DLQ), hand the commands to the message bus
(:mod:`service.handlers.bus`, which owns the batch policy), re-send the stored results of
duplicates, dead-letter the commands that failed, then — only then — commit the offsets.
Acknowledgement is manual: ACK_FIRST would be at-most-once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from faststream.kafka import KafkaRouter
from ticket_contracts import topics
from ticket_contracts.commands import Command

from service import tracing
from service.adapters.message_headers import output_headers
from service.adapters.retry import retry_transient
from service.adapters.serialization import result_json
from service.adapters.unit_of_work import SqlUnitOfWork
from service.domain.attachments import AttachmentLimits
from service.handlers.bus import MessageBus
from service.handlers.context import Limits
from service.handlers.messages import Incoming, Outcome
from service.logging import get_logger
from service.runtime import Runtime
from service.settings import Settings

from .acking import ack_after, batch_subscription, documented_per_record
from .dead_letters import DeadLetters
from .decoding import DeadLetter, decode_command, headers_of, split_decoded

log = get_logger(__name__)


def command_router(rt: Runtime) -> KafkaRouter:
    s = rt.settings
    router = KafkaRouter()
    dead_letters = DeadLetters(rt.broker, rt.metrics)
    bus = message_bus(rt)
    tracer = rt.tracer_provider.get_tracer(tracing.INSTRUMENTATION)

    @router.subscriber(topics.COMMANDS, **batch_subscription(
        rt, topics.COMMANDS, "commands", "Commands, keyed by ticket id; one result per distinct message_id."))
    @documented_per_record(Command)
    async def on_commands(body: list[Command]) -> None:
        records: tuple[Any, ...] = body  # type: ignore[assignment]  # raw records, see raw_records
        await ack_after(rt, lambda: _on_commands(records), what="commands")

    async def _on_commands(records: tuple[Any, ...]) -> None:
        started = time.perf_counter()
        decoded, dead = split_decoded(records, lambda r: decode_command(r, rt.resolver, s.max_message_bytes, rt.reply_topics))
        sources = [record for record, _ in decoded]
        items: list[Incoming] = [item for _, item in decoded]
        # A span per command in the trace of its traceparent; its context is stored with the
        # command's events and result (tracing.COMMAND_TRACES) and sent with re-sent results.
        with tracing.traced_messages(tracer, ((i.message_id, f"command {i.command_type}", headers_of(r))
                                              for r, i in decoded)) as spans:
            outcomes = await bus.handle(items)
            spans.outcomes.update((o.message_id, o.status) for o in outcomes)
            crashed = [DeadLetter(record, type(o.error).__name__, str(o.error)[:500])
                       for record, o in zip(sources, outcomes, strict=True) if o.status == "failed"]
            await retry_transient(lambda: _send_out(rt, dead_letters, dead + crashed, outcomes), what="publish",
                                  initial=s.retry_initial_backoff_s, maximum=s.retry_max_backoff_s)
        _account(rt, items, outcomes, len(records), time.perf_counter() - started)

    return router


def message_bus(rt: Runtime) -> MessageBus:
    """The bus on PostgreSQL, with transient faults (as the adapters classify them) retried in place."""
    s = rt.settings

    def retry(action: Any) -> Any:
        return retry_transient(action, what="command batch", initial=s.retry_initial_backoff_s,
                               maximum=s.retry_max_backoff_s,
                               on_retry=lambda e: rt.metrics.count(rt.metrics.retries, "command batch"))

    return MessageBus(lambda: SqlUnitOfWork(rt.engine, rt.outbox_handoff), retry, limits(s))


def limits(s: Settings) -> Limits:
    """The rules' configured limits."""
    schemes = frozenset(p.strip().lower() for p in s.attachment_uri_schemes.split(",") if p.strip())
    return Limits(AttachmentLimits(s.attachment_max_bytes, schemes), s.email_max_new_tickets_per_hour)


async def _send_out(rt: Runtime, dead_letters: DeadLetters, dead: list[DeadLetter],
                    outcomes: list[Outcome]) -> None:
    """Dead letters, the re-sent results of duplicates, and the results not stored in the inbox
    (authentication failures, a message_id reused for another command); the reply_to copies are best effort,
    like the relay's: a client's topic that the broker refuses must not stall the partition."""
    futures, copies = [], []
    for o in outcomes:
        if not (o.status == "duplicate" or o.unrecorded) or o.result is None:
            continue  # the rest go out through the outbox (the relay)
        key = str(o.ticket_id).encode() if o.ticket_id else None
        body = result_json(o.result).encode()
        traceparent, tracestate = tracing.COMMAND_TRACES.get().get(o.message_id, tracing.NO_TRACE)
        headers = output_headers(correlation_id=o.result.correlation_id, causation_id=o.result.command_id,
                                 message_type="ticket.command_result", traceparent=traceparent, tracestate=tracestate)
        futures.append(await rt.broker.publish(body, topics.COMMAND_RESULTS, key=key, headers=headers,
                                               no_confirm=True))
        if o.reply_to and rt.reply_topics.allows(o.reply_to):  # never a topic outside the reply pattern
            copies.append(rt.broker.publish(body, o.reply_to, key=key, headers=headers))
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
        if o.reason == "rate_limited":
            m.count(m.rate_limited, item.command_type)
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
