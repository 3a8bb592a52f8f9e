"""A service killed mid-stream (SIGKILL) or stopped (SIGTERM) and restarted loses and duplicates
no effect: every command has one result, every ticket versions 1..n, no gap, no double."""

from __future__ import annotations

import json
import uuid

from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from ticket_contracts import topics

from service.adapters import tables as t
from service.adapters.relay import BACKLOG_SQL
from tests.faults.conftest import Stack
from tests.support.process import ServiceProcess
from tests.support.streams import TopicReader
from tests.support.waiting import eventually
from tests.support.workload import check_event_stream, interleaved_commands


async def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(stack: Stack) -> None:
    await _crash_scenario(stack, stop=lambda service: service.kill())


async def test_sigterm_mid_stream_shuts_down_cleanly_and_restart_completes(stack: Stack) -> None:
    await _crash_scenario(stack, stop=lambda service: _assert_clean_exit(service.terminate()))


def _assert_clean_exit(code: int) -> None:
    assert code == 0, f"graceful shutdown exited with {code}"


async def _crash_scenario(stack: Stack, stop) -> None:
    engine = create_async_engine(stack.database_url)
    agents = [uuid.uuid4() for _ in range(2)]
    await _seed_agents(engine, agents)
    commands = interleaved_commands(tickets=30, total=600, agents=agents, seed=11)
    first = ServiceProcess(stack.database_url, stack.bootstrap, stack.log_dir, group="faults", name="first")
    second = ServiceProcess(stack.database_url, stack.bootstrap, stack.log_dir, group="faults", name="second")
    reader = await TopicReader(stack.bootstrap, topics.EVENTS, topics.COMMAND_RESULTS).start()
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=5)
    await producer.start()
    try:
        await first.start()
        for command in commands:
            await producer.send(topics.COMMANDS, command.model_dump_json().encode(),
                                key=str(command.payload.ticket_id).encode())  # type: ignore[attr-defined]
        await producer.flush()
        await eventually(lambda: _processed(engine, at_least=60), what="some progress before the crash")
        stop(first)
        await eventually(first.group_gone, what="the stopped instance's relay process stopped with it")
        done_before_restart = await _count(engine)
        print(f"processed before the restart: {done_before_restart} of {len(commands)}")
        for command in commands[:40]:  # clients retry what they sent before the crash
            await producer.send(topics.COMMANDS, command.model_dump_json().encode(),
                                key=str(command.payload.ticket_id).encode())  # type: ignore[attr-defined]
        await producer.flush()
        await second.start()
        await eventually(lambda: _processed(engine, at_least=len(commands)), timeout=120, what="every command")
        await eventually(lambda: _outbox_empty(engine), timeout=60, what="outbox drained")

        async with engine.connect() as conn:
            inbox = (await conn.execute(select(func.count()).select_from(t.processed_commands))).scalar_one()
            versions = dict((await conn.execute(select(t.tickets.c.id, t.tickets.c.version))).all())
            per_ticket = dict((await conn.execute(
                select(t.ticket_events.c.ticket_id, func.count()).group_by(t.ticket_events.c.ticket_id))).all())
        assert inbox == len(commands), "one inbox row per distinct command"
        assert per_ticket == versions, "history holds exactly one event per version"
        events = await eventually(lambda: _events_cover(reader, versions), timeout=60, what="all events on Kafka")
        check_event_stream(events, versions)
        results = [json.loads(r.value) for r in reader.records if r.topic == topics.COMMAND_RESULTS]
        by_command: dict[str, set[str]] = {}
        for result in results:
            by_command.setdefault(result["command_id"], set()).add(result["message_id"])
        assert set(by_command) == {str(c.message_id) for c in commands}, "every command has a result"
        assert all(len(ids) == 1 for ids in by_command.values()), "re-sent results are the original result"
    finally:
        first.stop()
        second.stop()
        await producer.stop()
        await reader.stop()
        await engine.dispose()


async def _seed_agents(engine, agents: list[uuid.UUID]) -> None:
    from datetime import UTC, datetime

    async with engine.begin() as conn:
        await conn.execute(t.users.insert(), [
            {"user_id": a, "email": f"{a.hex[:8]}@agents.test", "role": "agent", "active": True,
             "updated_at": datetime.now(UTC)} for a in agents])


async def _count(engine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(t.processed_commands))).scalar_one()


async def _processed(engine, at_least: int) -> bool:
    return await _count(engine) >= at_least


async def _outbox_empty(engine) -> bool:
    async with engine.connect() as conn:
        return (await conn.execute(text(BACKLOG_SQL))).scalar_one() == 0


def _events_cover(reader: TopicReader, versions: dict) -> list | None:
    events = [r for r in reader.records if r.topic == topics.EVENTS]
    seen = {(json.loads(r.value)["ticket_id"], json.loads(r.value)["ticket_version"]) for r in events}
    return events if len(seen) >= sum(versions.values()) else None
