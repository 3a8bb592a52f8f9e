"""Monitoring: a heartbeat on ``tickets.ops.v1`` and /livez, /readyz, /metrics over HTTP.

The HTTP side is a few lines on asyncio's own server: three fixed GET routes do not justify
an ASGI stack. Readiness means: the broker is connected, the schema check passed and the
subscribers are running.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from ticket_contracts import topics
from ticket_contracts.ops import Heartbeat

from service.adapters.relay import BACKLOG_SQL, OLDEST_UNPUBLISHED_AGE_SQL
from service.logging import get_logger
from service.metrics import service_version
from service.runtime import Runtime

log = get_logger(__name__)


async def measure_outbox(rt: Runtime) -> int:
    """Backlog and age of the oldest unpublished row into the gauges (every instance measures, so the
    age also grows when no instance relays); returns the backlog."""
    async with rt.engine.connect() as conn:
        backlog = int((await conn.execute(text(BACKLOG_SQL))).scalar_one())
        age = float((await conn.execute(text(OLDEST_UNPUBLISHED_AGE_SQL))).scalar_one())
    rt.metrics.outbox_backlog.set(backlog)
    rt.metrics.outbox_oldest_age.set(age)
    return backlog


async def heartbeat(rt: Runtime) -> Heartbeat:
    m = rt.metrics
    backlog = None
    try:
        backlog = await measure_outbox(rt)
    except Exception as error:  # reported as unknown; the heartbeat itself must go out
        log.warning("heartbeat could not read the outbox backlog", error=type(error).__name__)
    now = datetime.now(UTC)
    return Heartbeat(  # type: ignore[call-arg]  # message_id, sent_at: defaults (Annotated Field)
        instance_id=rt.settings.instance_id, version=service_version(), started_at=rt.started_at,
        uptime_s=(now - rt.started_at).total_seconds(),
        commands_handled=m.total(m.commands, "accepted", "rejected", "duplicate", "failed"),
        commands_rejected=m.total(m.commands, "rejected"),
        queries_answered=m.total(m.queries, "ok", "error"),
        dead_lettered=m.total_of(m.dead_letters),
        outbox_backlog=backlog,
        consumer_lag=rt.lag_monitor.last if rt.lag_monitor is not None else None,
        relay_active=rt.relay_active, ready=rt.ready,
    )


async def heartbeat_loop(rt: Runtime) -> None:
    while True:
        try:
            beat = await heartbeat(rt)
            await rt.broker.publish(beat.model_dump_json().encode(), topics.OPS,
                                    key=rt.settings.instance_id.encode(), headers=_BEAT_HEADERS)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.warning("heartbeat not published", error=type(error).__name__)
        await asyncio.sleep(rt.settings.heartbeat_interval_s)


_BEAT_HEADERS = {topics.HEADER_TYPE: "ops.heartbeat", topics.HEADER_CONTENT_TYPE: topics.JSON_CONTENT_TYPE}


async def serve_http(rt: Runtime) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            path = request.split(b" ")[1].decode() if request.count(b" ") >= 2 else "/"
            status, ctype, body = _route(rt, path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, rt.settings.http_host, rt.settings.http_port)


def _route(rt: Runtime, path: str) -> tuple[str, str, bytes]:
    if path == "/livez":
        return "200 OK", "text/plain", b"ok\n"
    if path == "/readyz":
        return ("200 OK", "text/plain", b"ready\n") if rt.ready else ("503 Service Unavailable", "text/plain",
                                                                         b"not ready\n")
    if path == "/metrics":
        return "200 OK", CONTENT_TYPE_LATEST, generate_latest(rt.metrics.registry)
    return "404 Not Found", "text/plain", b"not found\n"
