"""Monitoring: heartbeats on tickets.ops.v1; liveness, readiness and metrics over HTTP."""

from __future__ import annotations

import asyncio

from ticket_contracts import Heartbeat, topics

from service.devstack import free_port
from service.entrypoints.health import serve_http
from service.runtime import Runtime
from tests.support.streams import TopicReader
from tests.support.waiting import eventually


async def test_each_instance_publishes_heartbeats(service: Runtime, output: TopicReader) -> None:
    instance = service.settings.instance_id
    beats = await eventually(lambda: len(b := output.json_for(instance, topics.OPS)) >= 2 and b,
                             what="two heartbeats")
    beat = Heartbeat.model_validate(beats[-1])
    assert beat.instance_id == instance and beat.ready and beat.relay_active
    assert beat.uptime_s > Heartbeat.model_validate(beats[0]).uptime_s
    assert beat.outbox_backlog is not None and beat.outbox_backlog >= 0
    assert beat.commands_handled >= beat.commands_rejected >= 0


async def test_http_liveness_readiness_and_metrics(service: Runtime) -> None:
    service.settings.http_port = free_port()
    server = await serve_http(service)
    try:
        assert await _get(service, "/livez") == (200, "ok\n")
        assert await _get(service, "/readyz") == (200, "ready\n")
        service.ready = False
        assert (await _get(service, "/readyz"))[0] == 503
        service.ready = True
        status, body = await _get(service, "/metrics")
        assert status == 200 and "tickets_commands_total" in body and "tickets_relay_active 1.0" in body
        assert (await _get(service, "/nope"))[0] == 404
    finally:
        server.close()
        service.settings.http_port = 0


async def _get(service: Runtime, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", service.settings.http_port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


