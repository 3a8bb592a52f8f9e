"""Composition root: settings → broker, routers, engine, relay, monitoring. Nothing at import.

    app, runtime = create_app(settings)   # wire everything, connect nothing
    await app.start() / await app.stop()  # what `tickets run` does around signals
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from ticket_contracts import topics
from ticket_contracts.answers import Answer
from ticket_contracts.events import Event
from ticket_contracts.ops import Heartbeat
from ticket_contracts.results import CommandResult

from service.adapters.auth import ActorResolver
from service.adapters.read_models import check_search_config
from service.adapters.relay import OutboxRelay
from service.entrypoints.broker import TicketBroker
from service.entrypoints.commands import command_router
from service.entrypoints.health import VERSION, heartbeat_loop, serve_http
from service.entrypoints.queries import query_router
from service.entrypoints.user_events import user_events_router
from service.logging import configure_logging, get_logger
from service.metrics import Metrics
from service.migrate import check_schema_at_head
from service.runtime import Runtime
from service.settings import Settings, load_settings

log = get_logger(__name__)

DESCRIPTION = (
    "System of record for customer support tickets. Commands and queries in over Kafka; results, "
    "domain events and heartbeats out. Every input topic has a `<topic>.dlq` twin for messages that can "
    "never be processed, carried unchanged with `dlq.*` headers naming the error and the source."
)


def create_app(settings: Settings | None = None) -> tuple[FastStream, Runtime]:
    settings = settings or load_settings()
    broker = TicketBroker(
        settings.kafka_bootstrap, apply_types=False, graceful_timeout=30.0,
        client_id=f"ticket-service-{settings.instance_id}",
        # FastStream's own lines go through our structlog set-up; per-message lines at DEBUG.
        logger=logging.getLogger("faststream.tickets"), log_level=logging.DEBUG,
        max_request_size=settings.producer_max_request_bytes,
    )
    rt = Runtime(settings, broker, Metrics(), ActorResolver(settings.auth_mode, settings.auth_jwt_secret))
    broker.include_router(command_router(rt))
    broker.include_router(query_router(rt))
    broker.include_router(user_events_router(rt))
    _declare_outputs(broker)
    app = FastStream(
        broker,
        specification=AsyncAPI(title="Ticket service", version=VERSION, description=DESCRIPTION,
                               schema_version="3.0.0"),
    )
    tasks: list[asyncio.Task[Any]] = []
    servers: list[asyncio.Server] = []
    producers: list[AIOKafkaProducer] = []

    @app.on_startup
    async def open_database() -> None:
        if settings.auth_mode == "trust":
            log.warning("AUTH MODE IS 'trust': actors are taken from the envelope unverified — development only")
        # No pre-ping (a round trip per checkout): a dead connection fails its statement, which is a
        # transient error the callers retry on a fresh connection.
        rt.engine = create_async_engine(
            settings.database_url, pool_size=settings.database_pool_size,
            # The search triggers build documents with the configuration queries search with.
            connect_args={"server_settings": {"tickets.search_config": settings.search_text_config}},
        )
        if settings.check_schema_on_start:
            await check_schema_at_head(rt.engine)
        await check_search_config(rt.engine, settings.search_text_config)

    @app.after_startup
    async def start_background() -> None:
        # linger_ms stays 0: with a linger, aiokafka and the embedded broker were seen to loop on
        # metadata for a reply topic and to stall stop() for the request timeout (40 s).
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, max_batch_size=1 << 20,
                                    max_request_size=settings.producer_max_request_bytes,
                                    client_id=f"ticket-service-relay-{settings.instance_id}")
        await producer.start()
        producers.append(producer)
        relay = OutboxRelay(
            _asyncpg_dsn(settings.database_url), _publisher(producer), rt.metrics,
            batch_size=settings.relay_batch_size, poll_interval_s=settings.relay_poll_interval_s,
            retry_max_s=settings.retry_max_backoff_s, on_active=lambda active: setattr(rt, "relay_active", active),
        )
        tasks.append(asyncio.create_task(relay.run(), name="relay"))
        tasks.append(asyncio.create_task(heartbeat_loop(rt), name="heartbeat"))
        if settings.http_port:
            servers.append(await serve_http(rt))
        await _joined(broker, timeout_s=30.0)
        rt.ready = True
        log.info("ticket service ready", instance_id=settings.instance_id, bootstrap=settings.kafka_bootstrap)

    @app.on_shutdown
    async def stop_accepting() -> None:
        rt.ready = False

    @app.after_shutdown
    async def stop_background() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            server.close()
        for producer in producers:
            await producer.stop()
        if rt._engine is not None:
            await rt.engine.dispose()
        log.info("ticket service stopped", instance_id=settings.instance_id)

    return app, rt


def _declare_outputs(broker: KafkaBroker) -> None:
    """Publishers declared for the AsyncAPI document; the relay publishes to these topics."""
    broker.publisher(topics.EVENTS, schema=Event, title=topics.EVENTS,
                     description="Domain events keyed by ticket id, in ticket_version order per ticket.")
    broker.publisher(topics.COMMAND_RESULTS, schema=CommandResult, title=topics.COMMAND_RESULTS,
                     description="Exactly one outcome per distinct command; also sent to the command's reply_to.")
    broker.publisher(topics.OPS, schema=Heartbeat, title=topics.OPS,
                     description="Periodic heartbeat of each instance, keyed by instance id.")
    broker.publisher("reply_to", schema=Answer, title="query answers (reply_to)",
                     description="Answers to queries, sent to the topic named in the query's reply_to header.")
    for topic in topics.INPUT_TOPICS:
        broker.publisher(topics.dlq(topic), schema=bytes, title=topics.dlq(topic),
                         description=f"Messages from {topic} that can never be processed, unchanged, with dlq.* headers.")


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


def _publisher(producer: AIOKafkaProducer) -> Any:
    """The relay publishes with a plain aiokafka producer of its own: it sends thousands of
    ready-made JSON values per second, where FastStream's per-message publish machinery (codec,
    correlation ids, middlewares) only costs CPU."""

    async def publish(value: bytes, topic: str, key: bytes | None) -> Any:
        return await producer.send(topic, value, key=key)

    return publish


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Runtime]:
    """Start the service in this event loop (tests, tooling) and stop it on exit."""
    app, rt = create_app(settings)
    await app.start()
    try:
        yield rt
    finally:
        await app.stop()


async def run_service(settings: Settings | None = None) -> None:
    """`tickets run`: run until SIGINT/SIGTERM, then shut down gracefully."""
    settings = settings or load_settings()
    configure_logging(settings.log_format, settings.log_level)
    app, _ = create_app(settings)
    await app.run()


def docs_app() -> FastStream:
    """Factory for `faststream docs gen --factory service.app:docs_app`."""
    return create_app(load_settings(check_schema_on_start=False, kafka_bootstrap="localhost:9092"))[0]
