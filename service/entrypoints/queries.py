"""The ``tickets.queries.v1`` subscriber: request/reply; the answer goes to ``reply_to``.

Per fetched batch: decode (bad records → DLQ), answer the queries — a few at a time, each in
its own read-only snapshot, transient database faults retried in place — then publish every
answer to its ``reply_to`` topic, keyed like the request and carrying its correlation id,
and dead-letter what could not be answered. Offsets are committed only after the broker has
acknowledged all of it. A domain error becomes an ``ErrorAnswer`` with its reason code; a query
that crashed (a bug) is dead-lettered, so it is neither lost nor retried forever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from opentelemetry import trace

from faststream.kafka import KafkaRouter
from pydantic import ValidationError
from ticket_contracts import topics
from ticket_contracts.answers import AnswerBase, ErrorAnswer
from ticket_contracts.queries import Query

from service import tracing
from service.adapters.count_decisions import CountDecisions
from service.adapters.message_headers import output_headers
from service.adapters.read_models import reading
from service.adapters.retry import retry_transient
from service.adapters.serialization import answer_json
from service.domain.errors import DomainError
from service.handlers.queries import answer
from service.logging import get_logger
from service.runtime import Runtime

from .acking import ack_after, batch_subscription, documented_per_record
from .dead_letters import DeadLetters
from .decoding import DeadLetter, headers_of, split_decoded, summarise
from .query_decoding import IncomingQuery, decode_query

log = get_logger(__name__)


def query_router(rt: Runtime) -> KafkaRouter:
    s = rt.settings
    router = KafkaRouter()
    dead_letters = DeadLetters(rt.broker, rt.metrics)
    tracer = rt.tracer_provider.get_tracer(tracing.INSTRUMENTATION)

    @router.subscriber(topics.QUERIES, **batch_subscription(
        rt, topics.QUERIES, "queries", "Queries; the answer goes to the reply_to header's topic."))
    @documented_per_record(Query)
    async def on_queries(body: list[Query]) -> None:
        records: tuple[Any, ...] = body  # type: ignore[assignment]  # raw records, see raw_records
        await ack_after(rt, lambda: _on_queries(records), what="queries")

    async def _on_queries(records: tuple[Any, ...]) -> None:
        decoded, dead = split_decoded(records, lambda r: decode_query(r, rt.resolver, s.max_message_bytes, rt.reply_topics))
        incoming: list[IncomingQuery] = [item for _, item in decoded]
        traces.clear()
        outcomes = await asyncio.gather(*(_traced(item) for item in incoming))
        answered = [(item, out) for item, out in zip(incoming, outcomes, strict=True) if isinstance(out, AnswerBase)]
        dead += [DeadLetter(item.record, type(out).__name__, _describe(out))
                 for item, out in zip(incoming, outcomes, strict=True) if isinstance(out, Exception)]
        delivered = await retry_transient(lambda: _send_out(answered, dead), what="publish answers",
                                          initial=s.retry_initial_backoff_s, maximum=s.retry_max_backoff_s)
        for out in delivered:
            rt.metrics.count(rt.metrics.queries, "error" if isinstance(out, ErrorAnswer) else "ok")

    async def _traced(item: IncomingQuery) -> AnswerBase | Exception:
        """One query in a span of the trace its ``traceparent`` names (a new trace without one); its
        answer carries that span's context; linked to the batch's span (FastStream's middleware).
        Timed by query type."""
        parent = tracing.extract(headers_of(item.record))
        batch = tracing.links([trace.set_span_in_context(trace.get_current_span())])
        started = time.perf_counter()
        with tracer.start_as_current_span(f"query {item.query_type}", context=parent, kind=trace.SpanKind.SERVER,
                                          links=batch, attributes={"messaging.message.id": str(item.message_id)},
                                          ) as span:
            out = await _answer_one(item)
            if isinstance(out, Exception):
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(out).__name__))
        rt.metrics.query_seconds.labels(item.query_type).observe(time.perf_counter() - started)
        traces[item.message_id] = tracing.carrier(span) if span.get_span_context().is_valid else (None, None)
        return out

    #: First pages' recent count decisions (service.adapters.count_decisions), for this process.
    count_decisions = CountDecisions()
    #: This batch's trace context per query (batches of one subscriber run one at a time).
    traces: dict[Any, tuple[str | None, str | None]] = {}

    async def _answer_one(item: IncomingQuery) -> AnswerBase | Exception:
        if item.refusal is not None or item.query is None or item.actor is None:
            reason, message = item.refusal or ("validation_error", "invalid query")
            return _error(item, reason, message)
        query, actor = item.query, item.actor

        async def attempt() -> AnswerBase:
            assert rt.read_pool is not None
            # The query pool has no overflow: a batch's queries beyond its size wait for a connection.
            async with reading(rt.read_pool, s.search_text_config, count_decisions) as reads:
                return await answer(query, actor, reads)

        try:
            return await retry_transient(attempt, what="query", initial=s.retry_initial_backoff_s,
                                         maximum=s.retry_max_backoff_s,
                                         on_retry=lambda e: rt.metrics.count(rt.metrics.retries, "query"))
        except DomainError as error:
            return _error(item, error.code, error.message)
        except Exception as error:  # a bug: dead-letter the query rather than loop on it
            log.exception("query crashed", message_id=str(item.message_id), query_type=item.query_type)
            return error

    async def _send_out(answered: list[tuple[IncomingQuery, AnswerBase]], dead: list[DeadLetter]) -> list[AnswerBase]:
        """Publish every answer, then the dead letters. An answer the broker refuses (its reply_to
        topic is missing on a cluster that does not create topics) dead-letters its query instead
        of holding up the partition for ever; if the DLQ fails too, the broker is down: raise, and
        the whole send is retried. Returns the answers delivered."""
        sent = []
        for item, out in answered:
            correlation = str(out.correlation_id)
            traceparent, tracestate = traces.pop(item.message_id, (None, None))
            headers = output_headers(correlation_id=correlation, causation_id=item.message_id, message_type=out.type,
                                     traceparent=traceparent, tracestate=tracestate)
            sent.append((item, out, await _attempt(rt.broker.publish(
                answer_json(out), item.reply_to, key=item.record.key, correlation_id=correlation,
                headers=headers, no_confirm=True,
            ))))
        delivered, undelivered = [], []
        for item, out, future in sent:
            outcome = future if isinstance(future, Exception) else await _attempt(future)
            if not isinstance(outcome, Exception):
                delivered.append(out)
            else:
                log.warning("answer not delivered to its reply_to topic", message_id=str(item.message_id),
                            reply_to=item.reply_to, error=type(outcome).__name__)
                undelivered.append(DeadLetter(item.record, "AnswerUndeliverable",
                                              f"publishing the answer to reply_to failed: {type(outcome).__name__}"))
        await dead_letters.send_many(dead + undelivered)
        return delivered

    return router


async def _attempt(awaitable: Awaitable[Any]) -> Any:
    """The awaitable's value, or the exception it raised."""
    try:
        return await awaitable
    except Exception as error:
        return error


def _describe(error: Exception) -> str:
    """For the DLQ header: field paths of a validation error, never the values (ticket data)."""
    return summarise(error) if isinstance(error, ValidationError) else str(error)[:500]


def _error(item: IncomingQuery, reason: str, message: str) -> ErrorAnswer:
    return ErrorAnswer(query_type=item.query_type, causation_id=item.message_id,  # type: ignore[call-arg]
                       correlation_id=item.correlation_id, reason=reason, message=message)  # type: ignore[arg-type]
