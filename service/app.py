"""Composition root: settings → broker, routers, engine, relay, monitoring. Nothing at import.

    app, runtime = create_app(settings)   # wire everything, connect nothing
    await app.start() / await app.stop()  # what `tickets run` does around signals
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Union

from aiokafka import AIOKafkaProducer
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from opentelemetry.trace import TracerProvider
from pydantic import Field
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from ticket_contracts import topics
from ticket_contracts.answers import Answer
from ticket_contracts.commands import RedactTicket
from ticket_contracts.events import Event
from ticket_contracts.kafka_security import KafkaSecurity
from ticket_contracts.ops import ErasureProgress, Heartbeat
from ticket_contracts.results import CommandResult

from service.adapters.auth import ActorResolver
from service.adapters.read_models import check_search_config, read_pool
from service.entrypoints.kafka_security import check_tls, faststream_security, kafka_security
from service.adapters.kafka_batches import batched_publisher
from service.adapters.partitioning import partition_for
from service.adapters.relay import MetricsReports, OutboxRelay, RelayReports
from service.adapters.reply_topics import ReplyTopics
from service.entrypoints.broker import TicketBroker
from service.entrypoints.commands import command_router
from service.entrypoints.fetch_waits import FetchWaits
from service.entrypoints.health import heartbeat_loop, measure_outbox, serve_http
from service.entrypoints.lag import LagMonitor, monitor_loop
from service.entrypoints.queries import query_router
from service.entrypoints.specification import TicketAsyncAPI
from service.entrypoints.user_events import user_events_router
from service.logging import configure_logging, get_logger
from service.metrics import Metrics, service_version
from service.migrate import check_schema_at_head
from service.relay_process import RelayProcess
from service.runtime import Runtime
from service.settings import Settings, load_settings
from service.tracing import tracer_provider_from_env

log = get_logger(__name__)

DESCRIPTION = (
    "System of record for customer support tickets. Commands and queries in over Kafka; results, "
    "domain events and heartbeats out. Every input topic has a `<topic>.dlq` twin for messages that can "
    "never be processed, carried unchanged with `dlq.*` headers naming the error and the source."
)


def create_app(settings: Settings | None = None, *, tracer_provider: TracerProvider | None = None,
               relay_process: bool = False) -> tuple[FastStream, Runtime]:
    """``tracer_provider``: where spans go; by default as the ``OTEL_*`` variables say (off unless set).

    ``relay_process``: the outbox relay runs in a child process (:mod:`service.relay_process`), as
    `tickets run` does with TICKETS_RELAY_PROCESS=true; otherwise on this event loop (tests and
    tooling host the service in their own loop and read its relay's spans and state directly)."""
    settings = settings or load_settings()
    provider = tracer_provider if tracer_provider is not None else tracer_provider_from_env()
    security = kafka_security(settings)
    metrics = Metrics()
    resolver = ActorResolver.from_settings(
        settings, on_failure=lambda reason: metrics.count(metrics.auth_failures, reason))
    broker = TicketBroker(
        settings.kafka_bootstrap, apply_types=False,
        # Half of the shutdown budget for the batches in hand; the rest for closing connections.
        graceful_timeout=settings.shutdown_timeout_s / 2,
        client_id=f"ticket-service-{settings.instance_id}",
        # FastStream's own lines go through our structlog set-up; per-message lines at DEBUG.
        logger=logging.getLogger("faststream.tickets"), log_level=logging.DEBUG,
        max_request_size=settings.producer_max_request_bytes, security=faststream_security(security),
    )
    rt = Runtime(settings, broker, metrics, resolver, tracer_provider=provider)
    # A span per batch (FastStream's middleware: a root span linking the records' traces); the
    # handlers add one per command / query in that message's own trace. Only on the subscribers:
    # dead letters keep their original headers exactly.
    traced = [KafkaTelemetryMiddleware(tracer_provider=provider)]
    broker.include_router(command_router(rt), middlewares=traced)
    broker.include_router(query_router(rt), middlewares=traced)
    broker.include_router(user_events_router(rt))
    _declare_outputs(broker)
    app = FastStream(
        broker,
        specification=TicketAsyncAPI(title="Ticket service", version=service_version(), description=DESCRIPTION,
                                     schema_version="3.0.0"),
    )
    tasks: list[asyncio.Task[Any]] = []
    relay_reports = MetricsReports(rt.metrics, on_active=lambda active: setattr(rt, "relay_active", active))
    servers: list[asyncio.Server] = []
    producers: list[AIOKafkaProducer] = []
    monitors: list[LagMonitor] = []

    @app.on_startup
    async def open_database() -> None:
        if resolver.mode == "trust":
            log.warning("AUTH MODE IS 'trust': actors are taken from the envelope unverified — development only")
        else:
            log.info("actor authentication", auth=resolver.describe(), gateways=len(resolver.gateway_accounts))
            if not resolver.gateway_accounts:
                log.warning("TICKETS_AUTH_GATEWAY_ACCOUNTS is empty: every ticket.ingest_email is forbidden")
        log.info("kafka connection", security_protocol=security.protocol)
        await check_tls(settings.kafka_bootstrap, security)
        # No pre-ping (a round trip per checkout): a dead connection fails its statement, which is a
        # transient error the callers retry on a fresh connection.
        # hide_parameters: a database error's message must not carry the statement's values (titles, bodies).
        rt.engine = create_async_engine(
            settings.database_url, pool_size=settings.database_pool_size, hide_parameters=True,
            # The search triggers build documents with the configuration queries search with.
            connect_args={"server_settings": {"tickets.search_config": settings.search_text_config}},
        )
        # Queries get a pool of their own: half the size, read-only, never more connections.
        rt.read_pool = await read_pool(_asyncpg_dsn(settings.database_url), pool_size=query_pool_size(settings))
        if settings.check_schema_on_start:
            await check_schema_at_head(rt.engine)
        await check_search_config(rt.engine, settings.search_text_config)
        if relay_process:  # now: the child starts (~1 s of imports) while the consumers join their groups
            supervisor = RelayProcess(settings, relay_reports, restart_max_s=settings.retry_max_backoff_s)
            tasks.append(asyncio.create_task(supervisor.run(), name="relay"))

    @app.after_startup
    async def start_background() -> None:
        if not relay_process:
            relay, producer = await start_relay(settings, security, relay_reports, rt.reply_topics,
                                                tracer_provider=provider, may_lead=lambda: not rt.stopping)
            producers.append(producer)
            rt.outbox_handoff = relay
            tasks.append(asyncio.create_task(relay.run(), name="relay"))
        consumers = {sub.consumer._group_id: sub.consumer for sub in broker.subscribers  # type: ignore[attr-defined]
                     if getattr(sub, "consumer", None) is not None}
        monitor = LagMonitor(settings.kafka_bootstrap, consumers, rt.progress, rt.metrics,
                             **security.client_kwargs())
        await monitor.start()
        monitors.append(monitor)
        rt.lag_monitor = monitor
        tasks.append(asyncio.create_task(
            monitor_loop(monitor, settings.monitor_interval_s, lambda: measure_outbox(rt)), name="monitor"))
        tasks.append(asyncio.create_task(heartbeat_loop(rt), name="heartbeat"))
        rt.fetch_waits = FetchWaits(broker.subscribers, busy_ms=settings.batch_timeout_ms,
                                    idle_ms=settings.idle_fetch_wait_ms)
        tasks.append(asyncio.create_task(rt.fetch_waits.run(), name="fetch waits"))
        if settings.http_port:
            servers.append(await serve_http(rt))
        await _joined(broker, timeout_s=30.0)
        rt.ready = True
        log.info("ticket service ready", instance_id=settings.instance_id, bootstrap=settings.kafka_bootstrap,
                 version=service_version())

    @app.on_shutdown
    async def stop_accepting() -> None:
        """First of all: not ready, and the relay released (another instance takes it over while
        this one finishes its batches); a stopping instance never takes it again."""
        rt.ready = False
        rt.stopping = True
        deadline = asyncio.get_running_loop().time() + settings.shutdown_timeout_s
        rt.shutdown_deadline = deadline
        relay_tasks = [t for t in tasks if t.get_name() == "relay"]
        for task in relay_tasks:
            task.cancel()
        await _bounded(asyncio.gather(*relay_tasks, return_exceptions=True), 1.0, "relay")

    @app.after_shutdown
    async def stop_background() -> None:
        """Each step bounded by what is left of the shutdown budget: a database or broker that does
        not answer must not hold the process (nothing uncommitted is lost by giving up on them)."""
        deadline = rt.shutdown_deadline or asyncio.get_running_loop().time() + settings.shutdown_timeout_s

        def left() -> float:
            return max(0.1, deadline - asyncio.get_running_loop().time())

        for task in tasks:
            task.cancel()
        await _bounded(asyncio.gather(*tasks, return_exceptions=True), left(), "background tasks")
        for server in servers:
            server.close()
        for closing, what in [*((p.stop(), "relay producer") for p in producers),
                              *((m.stop(), "lag probe") for m in monitors)]:
            await _bounded(closing, left(), what)
        if rt._engine is not None:
            await _bounded(rt.engine.dispose(), left(), "database pool")
        if rt.read_pool is not None:
            await _bounded(rt.read_pool.close(), left(), "query pool")
        log.info("ticket service stopped", instance_id=settings.instance_id)

    return app, rt


OpsMessage = Annotated[Union[Heartbeat, ErasureProgress], Field(discriminator="type")]


async def start_relay(settings: Settings, security: KafkaSecurity, reports: RelayReports, reply_topics: ReplyTopics, *,
                      tracer_provider: TracerProvider | None, may_lead: Callable[[], bool] = lambda: True,
                      ) -> tuple[OutboxRelay, AIOKafkaProducer]:
    """The outbox relay (not yet running) with its producer (started), in this process or in the
    relay's own. The producer's linger_ms stays 0: with a linger, aiokafka and the embedded broker
    were seen to loop on metadata for a reply topic and to stall stop() for the request timeout (40 s)."""
    producer = relay_producer(settings, security)
    await producer.start()
    relay = OutboxRelay(
        _asyncpg_dsn(settings.database_url, application_name=relay_application_name(settings)),
        batched_publisher(producer), reports,
        batch_size=settings.relay_batch_size, poll_interval_s=settings.relay_poll_interval_s,
        retry_max_s=settings.retry_max_backoff_s, tracer_provider=tracer_provider, may_lead=may_lead,
        reply_topics=reply_topics,
    )
    return relay, producer


def relay_producer(settings: Settings, security: KafkaSecurity) -> AIOKafkaProducer:
    """The relay's own aiokafka producer (not started), with the same TLS/SASL as the broker."""
    return AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, max_batch_size=1 << 20,
                            max_request_size=settings.producer_max_request_bytes,
                            client_id=f"ticket-service-relay-{settings.instance_id}", partitioner=partition_for,
                            **security.client_kwargs())


def _declare_outputs(broker: KafkaBroker) -> None:
    """Publishers declared for the AsyncAPI document; the relay publishes to these topics."""
    broker.publisher(topics.EVENTS, schema=Event, title=topics.EVENTS,
                     description="Domain events keyed by ticket id, in ticket_version order per ticket.")
    broker.publisher(topics.COMMAND_RESULTS, schema=CommandResult, title=topics.COMMAND_RESULTS,
                     description="Exactly one outcome per distinct command; also sent to the command's reply_to.")
    broker.publisher(topics.OPS, schema=OpsMessage, title=topics.OPS,
                     description="Periodic heartbeat of each instance, keyed by instance id; progress of each "
                     "user erasure (ops.erasure_progress), keyed by user id.")
    broker.publisher(topics.COMMANDS, schema=RedactTicket, title=f"{topics.COMMANDS} (erasure)",
                     description="ticket.redact commands the service issues itself for a user.erased, keyed by "
                     "ticket id (docs/erasure.md).")
    broker.publisher("reply_to", schema=Answer, title="query answers (reply_to)",
                     description="Answers to queries, sent to the topic named in the query's reply_to header.")
    for topic in topics.INPUT_TOPICS:
        broker.publisher(topics.dlq(topic), schema=bytes, title=topics.dlq(topic),
                         description=f"Messages from {topic} that can never be processed: key, value and headers exactly as they came, then dlq.* headers and nothing else.")


async def _joined(broker: KafkaBroker, timeout_s: float) -> None:
    """Wait until every subscriber has partitions, so "ready" means "consuming". An instance may
    legitimately get none (more instances than partitions): then it is ready after ``timeout_s``."""
    consumers = [getattr(sub, "consumer", None) for sub in broker.subscribers]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while any(c is not None and not c.assignment() for c in consumers):
        if asyncio.get_running_loop().time() > deadline:
            log.warning("not every subscriber has partitions; ready anyway")
            return
        await asyncio.sleep(0.05)


async def _bounded(awaitable: Any, timeout_s: float, what: str) -> None:
    try:
        await asyncio.wait_for(awaitable, timeout_s)
    except TimeoutError:
        log.warning("shutdown step abandoned after its time", what=what, timeout_s=round(timeout_s, 1))
    except Exception as error:
        log.warning("shutdown step failed", what=what, error=type(error).__name__)


def _asyncpg_dsn(url: str, *, application_name: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if application_name:  # asyncpg sends unknown query parameters as server settings
        parsed = parsed.update_query_dict({"application_name": application_name})
    return parsed.render_as_string(hide_password=False)


def query_pool_size(settings: Settings) -> int:
    """The query side's connections: half the commands' pool (at least one)."""
    return max(1, settings.database_pool_size // 2)


def relay_application_name(settings: Settings) -> str:
    """The relay's database session is named after its instance: `tickets outbox status` shows it."""
    from service.ops.outbox import RELAY_APPLICATION_PREFIX

    return (RELAY_APPLICATION_PREFIX + settings.instance_id)[:63]


@contextlib.asynccontextmanager
async def running(settings: Settings, *, tracer_provider: TracerProvider | None = None) -> AsyncIterator[Runtime]:
    """Start the service in this event loop (tests, tooling) and stop it on exit."""
    app, rt = create_app(settings, tracer_provider=tracer_provider)
    await app.start()
    try:
        yield rt
    finally:
        await app.stop()


async def run_service(settings: Settings | None = None) -> None:
    """`tickets run`: run until SIGINT/SIGTERM, then shut down gracefully."""
    settings = settings or load_settings()
    configure_logging(settings.log_format, settings.log_level)
    app, _ = create_app(settings, relay_process=settings.relay_process)
    app.after_startup(freeze_startup_heap)  # after start_background: the service is ready
    await app.run()


def freeze_startup_heap() -> None:
    """Hide what start-up allocated (modules, schemas, compiled statements, connections) from the
    cyclic garbage collector, once the service is ready.

    On CPython 3.11 a loaded instance runs a full collection every second or two, and each walked
    those ~150,000 long-lived objects for 45–65 ms with the event loop stopped: the spikes of the
    command latency's p99 (bench/README.md, "Garbage collection"). Frozen objects are never
    collected, so the cyclic garbage of start-up is collected first. A process-level choice, made
    by ``run_service`` only: :func:`running` (tests, tooling) leaves its host's heap alone."""
    gc.collect()
    gc.freeze()


def docs_app() -> FastStream:
    """Factory for `faststream docs gen --factory service.app:docs_app`."""
    return create_app(load_settings(check_schema_on_start=False, kafka_bootstrap="localhost:9092",
                                    auth_mode="trust"))[0]
