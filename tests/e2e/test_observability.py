"""Observability on the real stack: consumer lag in /metrics and heartbeats that tells the truth,
headers and trace context on answers, spans for batches and queries."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from ticket_contracts import Actor, CreateTicket, GetTicket, Heartbeat, LogTime, new_id, topics
from ticket_contracts.client import TicketClient

from service.devstack import free_port
from service.entrypoints.health import serve_http
from service.runtime import Runtime
from tests.support.streams import TopicReader
from tests.support.waiting import eventually


@pytest.fixture
async def metrics_url(service: Runtime) -> AsyncIterator[int]:
    service.settings.http_port = free_port()
    server = await serve_http(service)
    yield service.settings.http_port
    server.close()
    service.settings.http_port = 0


async def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    raw = (await reader.read()).decode()
    writer.close()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(raw.partition("\r\n\r\n")[2]):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


async def command_lag(port: int, group: str) -> dict[str, float]:
    lag = (await scrape(port)).get("tickets_consumer_lag", {})
    return {dict(labels)["partition"]: value for labels, value in lag.items() if dict(labels)["group"] == group}


def agent() -> Actor:
    return Actor(user_id=uuid.uuid4(), role="agent")


async def test_metrics_lag_is_known_rises_while_the_service_is_stalled_and_falls_back_to_zero(
    service: Runtime, client: TicketClient, metrics_url: int, database_url: str, output: TopicReader,
) -> None:
    group = f"{service.settings.consumer_group}.commands"
    customer = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    ticket_id = new_id()
    assert (await client.send(CreateTicket(actor=customer, payload={
        "ticket_id": ticket_id, "title": "Lag", "description": "Stall me"}))).accepted
    lag = await eventually(lambda: _all_zero(command_lag(metrics_url, group)), what="lag known and 0")
    assert lag, "the lag of every assigned partition is reported, not null"

    # Stall the service: hold the ticket's row lock, so the batch with its next command waits.
    engine = create_async_engine(database_url)
    staff = agent()
    try:
        async with engine.connect() as conn:
            tx = await conn.begin()
            await conn.execute(text("SELECT 1 FROM tickets WHERE id = :id FOR UPDATE"), {"id": ticket_id})
            await _log_time(client, ticket_id, staff, 3)
            first = await eventually(lambda: _total_at_least(command_lag(metrics_url, group), 2),
                                     what="lag while stalled")
            await _log_time(client, ticket_id, staff, 5)
            second = await eventually(lambda: _total_at_least(command_lag(metrics_url, group), first + 5),
                                      what="lag rising while stalled")
            assert second >= 7
            await tx.rollback()
    finally:
        await engine.dispose()
    await eventually(lambda: _all_zero(command_lag(metrics_url, group)), what="lag back to 0")
    beat = await eventually(lambda: _latest_beat_with_lag(output, service), what="a heartbeat with lag 0")
    assert beat.consumer_lag is not None


async def test_build_info_process_and_python_collectors_are_exported(service: Runtime, metrics_url: int) -> None:
    from importlib.metadata import version

    samples = await scrape(metrics_url)
    assert samples["tickets_build_info"] == {(("version", version("ticket-service")),): 1.0}
    assert "process_resident_memory_bytes" in samples and "python_info" in samples
    assert "tickets_outbox_oldest_unpublished_age_seconds" in samples


async def test_answers_carry_their_headers_and_continue_the_query_trace(
    service: Runtime, client: TicketClient, kafka_bootstrap: str, spans: InMemorySpanExporter,
) -> None:
    replies = await TopicReader(kafka_bootstrap, client.reply_topic).start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        query = GetTicket(actor=agent(), payload={"ticket_id": new_id()})
        trace_id = uuid.uuid4().hex
        await producer.send_and_wait(topics.QUERIES, query.model_dump_json().encode(), key=b"k", headers=[
            (topics.HEADER_REPLY_TO, client.reply_topic.encode()),
            (topics.HEADER_CORRELATION_ID, str(query.message_id).encode()),
            ("traceparent", f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01".encode())])
        record = await eventually(lambda: next((r for r in replies.records
                                                if json.loads(r.value)["causation_id"] == str(query.message_id)),
                                               None), what="the answer")
    finally:
        await producer.stop()
        await replies.stop()
    headers = {k: v.decode() for k, v in record.headers}
    answer = json.loads(record.value)
    assert headers["correlation_id"] == str(query.message_id) == answer["correlation_id"]
    assert headers["causation_id"] == str(query.message_id)
    assert headers["type"] == answer["type"] == "ticket.query.error"  # not found
    assert headers["content-type"] == "application/json"
    assert headers["traceparent"].split("-")[1] == trace_id
    finished = {s.name: s for s in spans.get_finished_spans() if s.context.trace_id == int(trace_id, 16)}
    assert "query ticket.get" in finished
    # FastStream's middleware: a batch trace whose root links every record's trace, and its process span.
    roots = [s for s in spans.get_finished_spans() if s.name == f"{topics.QUERIES} create"
             and any(link.context.trace_id == int(trace_id, 16) for link in s.links)]
    assert roots
    assert any(s.name == f"{topics.QUERIES} process" and s.context.trace_id == roots[0].context.trace_id
               for s in spans.get_finished_spans())


async def _log_time(client: TicketClient, ticket_id: uuid.UUID, actor: Actor, n: int) -> None:
    for _ in range(n):
        command = LogTime(actor=actor, payload={"ticket_id": ticket_id, "entry_id": uuid.uuid4(), "minutes": 1})
        await client.publish(command, topics.COMMANDS, key=ticket_id, reply=False)


async def _all_zero(lag: object) -> dict[str, float] | None:
    values = await lag  # type: ignore[misc]
    return values if values and all(v == 0 for v in values.values()) else None


async def _total_at_least(lag: object, least: float) -> float | None:
    total = sum((await lag).values())  # type: ignore[misc]
    return total if total >= least else None


def _latest_beat_with_lag(output: TopicReader, service: Runtime) -> Heartbeat | None:
    beats = [Heartbeat.model_validate(b) for b in output.json_for(service.settings.instance_id, topics.OPS)]
    lag = beats[-1].consumer_lag if beats else None
    commands = {k: v for k, v in (lag or {}).items() if k.startswith(f"{topics.COMMANDS}:")}
    return beats[-1] if commands and set(commands.values()) == {0} else None
