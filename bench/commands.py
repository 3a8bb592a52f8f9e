"""Command-side benchmark (issue 3): the service against a hand-written floor, in one run.

    .venv/bin/python -m bench.commands [--rounds 3] [--drain-commands 12000] [--profile]

Two systems under test — the service (a ``tickets run`` subprocess) and ``bench.floor`` (a subprocess)
— each with its own database on one embedded PostgreSQL server and a fresh embedded broker per turn. In
each round the two take turns (who goes first alternates), and each turn is:

1. **drain** — a pre-produced backlog of a realistic mix (per ticket: create, customer reply, assign,
   agent reply, log time, pending, customer reply, resolve) is drained by a freshly started process;
   commands/s from the first to the last command result seen on ``tickets.command-results.v1``;
2. **latency** — commands produced open-loop at 200/s (in the last round also at half the system's
   median drain rate); latency from a command's scheduled send time to the arrival of its first event
   on ``tickets.events.v1`` (matched by ``causation_id``).

Back-to-back turns share the machine's load of the moment (other people's tests on 2 cores), so the
ratios service/floor are taken round by round and their median is reported. The table goes to stdout;
every figure, with the machine's details and the CPU each process used, to
``bench/results/commands.json``. See bench/README.md.
``TICKETS_BENCH_DATABASE_URL`` (a server; the bench creates and drops its own databases there) and
``TICKETS_BENCH_KAFKA_BOOTSTRAP`` replace the embedded servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.engine import make_url
from ticket_contracts import topics
from ticket_contracts.commands import (
    AddReply,
    AddReplyPayload,
    AssignTicket,
    AssignTicketPayload,
    ChangeStatus,
    ChangeStatusPayload,
    CommandBase,
    CreateTicket,
    CreateTicketPayload,
    LogTime,
    LogTimePayload,
)
from ticket_contracts.envelope import Actor, new_id
from ticket_contracts.model import Channel, Priority, Role, Status
from ticket_contracts.users import UserUpserted, UserUpsertedPayload

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CAUSE = re.compile(rb'"causation_id":"([0-9a-f-]{36})"')
FIXED_RATE = 200.0
WINDOW = 50  # tickets in flight at once: a ticket's next command comes WINDOW commands later
MIX = ("create", "reply (customer)", "assign", "reply (agent)", "log time", "status → pending",
       "reply (customer)", "status → resolved")
EVENTS_PER_SCRIPT = 10  # the agent's first reply and the customer's reply on a pending ticket move the status
_T0 = time.perf_counter()


#: The idle phase: settle, then measure (the service lengthens its fetch waits after 10 s idle).
IDLE_SETTLE_S, IDLE_SECONDS = 11.0, 3.0


def say(text: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f} s] {text}", flush=True)


# ---- workload ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cast:
    customers: list[Actor]
    agents: list[Actor]

    @classmethod
    def make(cls, rng: random.Random, customers: int = 50, agents: int = 20) -> Cast:
        def uid() -> uuid.UUID:
            return uuid.UUID(int=rng.getrandbits(128), version=4)

        return cls([Actor(user_id=uid(), role=Role.CUSTOMER, customer_id=uid()) for _ in range(customers)],
                   [Actor(user_id=uid(), role=Role.AGENT) for _ in range(agents)])

    def user_events(self) -> list[UserUpserted]:
        now = datetime.now(UTC)
        return [UserUpserted(occurred_at=now, payload=UserUpsertedPayload(
            user_id=a.user_id, email=f"{a.user_id.hex[:12]}@example.test", display_name=f"{a.role.value} {i}",
            role=a.role, customer_id=a.customer_id)) for i, a in enumerate(self.customers + self.agents)]


_WORDS = ("printer", "invoice", "login", "password", "error", "order", "refund", "shipping", "account", "the",
          "cannot", "since", "yesterday", "please", "help", "urgent", "screen", "update", "version", "thanks")


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(_WORDS, k=rng.randint(low, high)))


def ticket_script(rng: random.Random, cast: Cast) -> list[CommandBase]:
    """One ticket's life in eight commands (ten events), as MIX lists them."""
    customer, agent, assignee = rng.choice(cast.customers), rng.choice(cast.agents), rng.choice(cast.agents)
    tid = new_id()
    return [
        CreateTicket(actor=customer, payload=CreateTicketPayload(
            ticket_id=tid, title=_text(rng, 3, 8), description=_text(rng, 30, 90),
            priority=rng.choice(list(Priority)), channel=Channel.WEB, tags=rng.sample(["billing", "login", "bug"], 2))),
        AddReply(actor=customer, payload=AddReplyPayload(ticket_id=tid, reply_id=new_id(), body=_text(rng, 10, 60))),
        AssignTicket(actor=agent, payload=AssignTicketPayload(ticket_id=tid, assignee_id=assignee.user_id)),
        AddReply(actor=agent, payload=AddReplyPayload(ticket_id=tid, reply_id=new_id(), body=_text(rng, 10, 60))),
        LogTime(actor=agent, payload=LogTimePayload(ticket_id=tid, entry_id=new_id(), minutes=15, note="triage")),
        ChangeStatus(actor=agent, payload=ChangeStatusPayload(ticket_id=tid, status=Status.PENDING,
                                                             reason="waiting for the customer")),
        AddReply(actor=customer, payload=AddReplyPayload(ticket_id=tid, reply_id=new_id(), body=_text(rng, 10, 60))),
        ChangeStatus(actor=agent, payload=ChangeStatusPayload(ticket_id=tid, status=Status.RESOLVED)),
    ]


@dataclass(frozen=True, slots=True)
class Wire:
    message_id: bytes  # str(uuid) as bytes, as it appears in causation_id
    key: bytes
    value: bytes


def workload(rng: random.Random, cast: Cast, count: int) -> list[Wire]:
    """``count`` commands: tickets WINDOW at a time, each ticket's commands in order (same key)."""
    scripts = [ticket_script(rng, cast) for _ in range(-(-count // len(MIX)))]
    out: list[Wire] = []
    for start in range(0, len(scripts), WINDOW):
        chunk = scripts[start:start + WINDOW]
        for step in range(len(MIX)):
            for script in chunk:
                c = script[step]
                ticket_id = c.payload.ticket_id  # type: ignore[attr-defined]
                out.append(Wire(str(c.message_id).encode(), str(ticket_id).encode(), c.model_dump_json().encode()))
    return out[:count]


# ---- measuring CPU ---------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int, children: bool = False) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / _TICK


def _tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` (with its reaped children) and of its live children: a PostgreSQL
    server, or the service with its relay process."""
    total = _proc_cpu(root, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == root:
                    total += _proc_cpu(int(entry.name))
    return total


def _machine_busy() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine since boot: busy is what ran here (user,
    nice, system, irq, softirq); stolen is the time a virtual machine's vCPUs were ready but the host
    ran something else (``steal``) — the sign of a contended host, whose figures are not comparable."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq) / _TICK, steal / _TICK


class CpuMeter:
    """CPU used by each part while a phase runs, and by everything else on the machine."""

    def __init__(self, parts: dict[str, Callable[[], float]]) -> None:
        self.parts = parts

    @contextlib.contextmanager
    def phase(self, into: dict[str, Any]) -> Iterator[None]:
        start = {k: f() for k, f in self.parts.items()}
        busy0, stolen0 = _machine_busy()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            wall = time.perf_counter() - t0
            used = {k: round(f() - start[k], 2) for k, f in self.parts.items()}
            busy, stolen = _machine_busy()
            busy, stolen = busy - busy0, stolen - stolen0
            into["cpu_s"] = used | {
                "machine_busy": round(busy, 2), "everything_else": round(busy - sum(used.values()), 2),
                "stolen": round(stolen, 2),
                "wall": round(wall, 2), "cores": os.cpu_count(),
            }


# ---- servers ---------------------------------------------------------------------------------
class Servers:
    """One PostgreSQL server for the whole run; a fresh database and (embedded) broker per system."""

    def __init__(self, scratch: Path, server_url: str | None = None) -> None:
        self.scratch = scratch
        self.server_url = server_url or os.environ.get("TICKETS_BENCH_DATABASE_URL")
        self.external_kafka = os.environ.get("TICKETS_BENCH_KAFKA_BOOTSTRAP")
        self._postgres: Any = None
        self._brokers: dict[str, Any] = {}
        self._databases: list[str] = []

    def start(self) -> None:
        if self.server_url is None:
            from service.devstack import EmbeddedPostgres

            self._postgres = EmbeddedPostgres(database="postgres")
            self._postgres.start(self.scratch, ephemeral=True)
            self.server_url = self._postgres.url

    @property
    def postmaster_pid(self) -> int | None:
        if self._postgres is None:
            return None
        return int((self._postgres.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])

    async def database(self, name: str, root: Path | None = None) -> str:
        """A fresh database migrated to head — with the migrations of the checkout ``root`` if given."""
        from service.devstack import create_database
        from service.migrate import upgrade

        assert self.server_url is not None
        url = await create_database(self.server_url, f"{name}_{uuid.uuid4().hex[:8]}")
        self._databases.append(url)
        if root is None:
            await asyncio.to_thread(upgrade, url)  # Alembic runs its own event loop
        else:
            await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "service.cli", "migrate"], check=True,
                                    cwd=root, env=os.environ | {"TICKETS_DATABASE_URL": url, "PYTHONPATH": _python_path(root)},
                                    capture_output=True)
        return url

    async def broker(self) -> tuple[str, int | None]:
        """A bootstrap address with every topic, and the broker's pid if it is embedded."""
        from service.devstack import EmbeddedKafka, ensure_topics

        if self.external_kafka:
            bootstrap, pid = self.external_kafka, None
        else:
            kafka = EmbeddedKafka(log_dir=self.scratch)
            kafka.start()  # from this (the main) thread: the broker dies with the thread that started it
            self._brokers[kafka.bootstrap] = kafka
            assert kafka._process is not None
            bootstrap, pid = kafka.bootstrap, kafka._process.pid
        await ensure_topics(bootstrap)
        return bootstrap, pid

    def release(self, bootstrap: str) -> None:
        """Stop the embedded broker of ``bootstrap`` (an external one is left alone)."""
        if (kafka := self._brokers.pop(bootstrap, None)) is not None:
            kafka.stop()

    async def stop(self) -> None:
        for bootstrap in list(self._brokers):
            self.release(bootstrap)
        if self._postgres is not None:
            self._postgres.stop()
        elif self.server_url:
            from sqlalchemy import text
            from sqlalchemy.ext.asyncio import create_async_engine

            engine = create_async_engine(self.server_url, isolation_level="AUTOCOMMIT")
            async with engine.connect() as conn:
                for url in self._databases:
                    await conn.execute(text(f'drop database if exists "{make_url(url).database}" with (force)'))
            await engine.dispose()


def asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def start_group_at_end(bootstrap: str, group: str, topic_names: list[str]) -> None:
    """Commit the current end offsets for ``group`` so it only sees what this run produces."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(t, p) for t in topic_names for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        await consumer.commit({tp: await consumer.position(tp) for tp in tps})
    finally:
        await consumer.stop()


# ---- what comes out --------------------------------------------------------------------------
class Observer:
    """Reads every event and result from the end of the topics on; notes when each command's first
    event and its result arrived (``time.perf_counter``), matched by ``causation_id``."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5,
                                          max_partition_fetch_bytes=4 << 20)
        self.events: dict[bytes, float] = {}
        self.results: dict[bytes, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        c = self._consumer
        await c.start()
        await c.topics()
        tps = [TopicPartition(t, p) for t in (topics.EVENTS, topics.COMMAND_RESULTS)
               for p in sorted(c.partitions_for_topic(t) or ())]
        c.assign(tps)
        await c.seek_to_end(*tps)
        for tp in tps:
            await c.position(tp)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            fetched = await self._consumer.getmany(timeout_ms=50, max_records=10_000)
            now = time.perf_counter()
            for tp, records in fetched.items():
                seen = self.events if tp.topic == topics.EVENTS else self.results
                for r in records:
                    if (m := CAUSE.search(r.value)) is not None:
                        seen.setdefault(m.group(1), now)

    async def wait_for(self, ids: list[bytes], seen: dict[bytes, float], timeout_s: float, *,
                       any_of: bool = False, stall_s: float = 20.0) -> int:
        """Wait until every id (or, with ``any_of``, one of them) was seen, the time is up, or nothing
        new arrived for ``stall_s`` (a stuck system); return how many are missing."""
        now = time.monotonic()
        deadline, progress = now + timeout_s, now
        missing = [i for i in ids if i not in seen]
        while missing and (not any_of or len(missing) == len(ids)) and now < deadline:
            assert self._task is not None
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.05)
            before, missing = len(missing), [i for i in missing if i not in seen]
            now = time.monotonic()
            if len(missing) < before:
                progress = now
            elif not any_of and now - progress > stall_s:
                say(f"nothing new for {stall_s:.0f} s: {len(missing)} of {len(ids)} still missing — giving up")
                break
        return len(missing)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()


async def produce_all(producer: AIOKafkaProducer, wires: list[Wire], topic: str = topics.COMMANDS) -> None:
    for start in range(0, len(wires), 5000):
        await asyncio.gather(*[await producer.send(topic, w.value, key=w.key) for w in wires[start:start + 5000]])


async def produce_at_rate(producer: AIOKafkaProducer, wires: list[Wire], rate: float) -> dict[bytes, float]:
    """Open loop: command i is due at t0 + i/rate and is stamped with that time, so a generator that
    falls behind shows up as latency (no coordinated omission)."""
    due: dict[bytes, float] = {}
    futures = []
    t0 = time.perf_counter() + 0.05
    i = 0
    while i < len(wires):
        now = time.perf_counter()
        upto = min(len(wires), int((now - t0) * rate) + 1)
        while i < upto:
            w = wires[i]
            due[w.message_id] = t0 + i / rate
            futures.append(await producer.send(topics.COMMANDS, w.value, key=w.key))
            i += 1
        await asyncio.sleep(max(0.0005, t0 + i / rate - time.perf_counter()))
    await asyncio.gather(*futures)
    return due


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))]


# ---- the systems under test ------------------------------------------------------------------
@dataclass
class System:
    """A system under test run as a child process (its own interpreter and event loop)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    cpu_before_restart: float = 0.0

    cwd: Path = ROOT

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.argv, env=os.environ | self.env, cwd=self.cwd, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def check(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log}")

    def stop(self, timeout_s: float = 30.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def scrape_metrics(port: int) -> dict[str, float]:
    """The service's own counters (/metrics), summed per metric name and label set."""
    with contextlib.suppress(OSError, TimeoutError):
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        await writer.drain()
        body = (await asyncio.wait_for(reader.read(), 5)).decode(errors="replace")
        writer.close()
        out = {}
        for line in body.splitlines():
            if line.startswith("tickets_") and " " in line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                if "_bucket" not in name and "_created" not in name:
                    out[name] = float(value)
        return out
    return {}


# ---- phases ----------------------------------------------------------------------------------
@dataclass
class Target:
    """One system under test with its database, its broker of the moment and how to point it there."""

    system: System
    dsn: str
    #: Point the system at a broker and at fresh consumer groups (which start at the end of the topics;
    #: rejoining an old group waits out the previous member's session, ~13 s on Tansu).
    configure: Callable[[str], Awaitable[None]]
    metrics_port: int | None = None
    bootstrap: str = ""
    broker_pid: int | None = None
    producer: AIOKafkaProducer | None = None

    @property
    def name(self) -> str:
        return self.system.name

    async def attach(self, servers: Servers) -> None:
        """A fresh embedded broker for each turn: Tansu keeps everything in memory and gets slower as its
        topics grow (+0.1 core at 200/s per round seen), which would penalise later rounds."""
        if self.producer is not None:
            await self.producer.stop()
            servers.release(self.bootstrap)
        self.bootstrap, self.broker_pid = await servers.broker()
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0, max_batch_size=256 << 10)
        await self.producer.start()
        await self.configure(self.bootstrap)

    async def detach(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None


@dataclass
class Run:
    args: argparse.Namespace
    servers: Servers
    cast: Cast
    rng: random.Random
    scratch: Path

    def meter(self, t: Target) -> CpuMeter:
        parts: dict[str, Callable[[], float]] = {"system_under_test": lambda: _tree_cpu(t.system.pid),
                                                 "bench": lambda: sum(os.times()[:2])}
        if (pm := self.servers.postmaster_pid) is not None:
            parts["postgres"] = lambda: _tree_cpu(pm)
        if (bp := t.broker_pid) is not None:
            parts["broker"] = lambda: _proc_cpu(bp)
        return CpuMeter(parts)

    async def round(self, t: Target, number: int, last: bool, drained: list[float]) -> dict[str, Any]:
        """Start the system on a fresh backlog, drain it, then latency at 200/s; after the last drain also
        idle, and latency at half the median of this system's drain rates (``drained``: earlier rounds')."""
        backlog = workload(self.rng, self.cast, self.args.drain_commands)
        await t.attach(self.servers)
        assert t.producer is not None
        await produce_all(t.producer, backlog)
        observer = Observer(t.bootstrap)
        await observer.start()
        started = time.perf_counter()
        t.system.start()
        profile = self.args.profile and number == 1
        try:
            out: dict[str, Any] = {"round": number}
            meter = self.meter(t)
            out["drain"] = await self.drain(t, observer, meter, backlog, started, profile)
            out["latency_200"] = await self.latency(t, meter, observer, FIXED_RATE, profile)
            if last:
                half_max = float(round((median([*drained, out["drain"]["commands_per_s"]]) or 2 * FIXED_RATE) / 2))
                out["idle"] = idle = {}
                await asyncio.sleep(IDLE_SETTLE_S)  # an idle instance polls less after a second (fetch_waits)
                with meter.phase(idle):  # what the system costs doing nothing (polling, heartbeats, relay)
                    await asyncio.sleep(IDLE_SECONDS)
                out["latency_half_max"] = await self.latency(t, meter, observer, half_max, False)
            return out
        finally:
            await observer.stop()
            t.system.stop()

    async def drain(self, t: Target, observer: Observer, meter: CpuMeter, backlog: list[Wire], started: float,
                    profile: bool) -> dict[str, Any]:
        ids = [w.message_id for w in backlog]
        drain: dict[str, Any] = {"commands": len(ids)}
        # The clock (and the CPU meter) starts at the first result: start-up and the group join are excluded.
        await observer.wait_for(ids, observer.results, self.args.timeout, any_of=True)
        t.system.check()
        profiler = start_profiler(t.system.pid, RESULTS / f"{t.name}-drain.pyspy.tmp") if profile else None
        with meter.phase(drain):
            missing = await observer.wait_for(ids, observer.results, self.args.timeout)
            t.system.check()
        stop_profiler(profiler)
        arrivals = sorted(observer.results[i] for i in ids if i in observer.results)
        if len(arrivals) < 2:
            raise RuntimeError(f"{t.name}: only {len(arrivals)} results arrived; see {t.system.log}")
        first, last = arrivals[0], arrivals[-1]
        counted = len(arrivals) - sum(1 for a in arrivals if a == first)  # the first poll's are time zero
        drain |= {
            "missing_results": missing, "first_result_after_start_s": round(first - started, 2),
            "seconds": round(last - first, 3),
            "commands_per_s": round(counted / (last - first), 1) if last > first else None,
        }
        drain |= await db_span(t.dsn, ids)
        drain["cpu_us_per_command"] = {k: round(v / counted * 1e6) for k, v in drain["cpu_s"].items()
                                       if k in ("system_under_test", "postgres", "broker")}
        if t.metrics_port is not None:  # a fresh process: its counters are the drain's (plus a few users)
            m = await scrape_metrics(t.metrics_port)
            if n := m.get("tickets_command_batch_size_count"):
                drain["batches"] = int(n)
                drain["mean_batch_size"] = round(m["tickets_command_batch_size_sum"] / n, 1)
                drain["mean_batch_ms"] = round(m["tickets_command_batch_seconds_sum"] / n * 1000, 1)
            if rounds := m.get("tickets_relay_publish_seconds_count"):  # how the relay's rounds fell
                drain["relay_rounds"] = int(rounds)
        say(f"{t.name}: drained {len(arrivals)} commands at {drain['commands_per_s']} commands/s "
            f"(CPU {drain['cpu_us_per_command']['system_under_test']} µs/command)")
        return drain

    async def latency(self, t: Target, meter: CpuMeter, observer: Observer, rate: float,
                      profile: bool) -> dict[str, Any]:
        count = max(200, int(rate * self.args.latency_seconds))
        wires = workload(self.rng, self.cast, count)
        phase: dict[str, Any] = {"rate": rate, "commands": count}
        profiler = start_profiler(t.system.pid, RESULTS / f"{t.name}-{rate:.0f}s.pyspy.tmp") if profile else None
        assert t.producer is not None
        with meter.phase(phase):
            due = await produce_at_rate(t.producer, wires, rate)
            sent = time.perf_counter()
            ids = list(due)
            missing = await observer.wait_for(ids, observer.events, self.args.timeout)
            t.system.check()
        stop_profiler(profiler)
        late = sorted((observer.events[i] - due[i]) * 1000 for i in ids if i in observer.events)
        span = max(due.values()) - min(due.values())
        phase |= {
            "achieved_rate": round((len(due) - 1) / span, 1) if span else None,
            "generator_lag_ms": round((sent - max(due.values())) * 1000, 1),
            "missing_events": missing, **_percentiles(late),
        }
        phase["_samples"] = late  # pooled across rounds by summarise(), then dropped
        if self.args.timeline is not None:  # when each command was due, and how late its first event came
            self.args.timeline.mkdir(parents=True, exist_ok=True)
            start = min(due.values())
            rows = sorted((due[i] - start, (observer.events[i] - due[i]) * 1000) for i in ids if i in observer.events)
            (self.args.timeline / f"{t.name}-{rate:.0f}s-{time.time():.0f}.tsv").write_text(
                "".join(f"{at:.4f}\t{ms:.2f}\n" for at, ms in rows))
        say(f"{t.name}: {rate:.0f}/s → p50 {phase['p50_ms']} ms, p99 {phase['p99_ms']} ms")
        return phase


def _percentiles(late: list[float]) -> dict[str, float | None]:
    return {"p50_ms": round(percentile(late, 0.50), 1), "p90_ms": round(percentile(late, 0.90), 1),
            "p99_ms": round(percentile(late, 0.99), 1), "max_ms": round(late[-1], 1) if late else None}


async def db_span(dsn: str, ids: list[bytes]) -> dict[str, Any]:
    """When the first and the last drained command were handled, per the inbox (batch start times)."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, min(processed_at) AS a, max(processed_at) AS b, "
            "count(*) FILTER (WHERE status = 'rejected') AS rejected "
            "FROM processed_commands WHERE message_id = ANY($1::uuid[])", [i.decode() for i in ids])
    finally:
        await conn.close()
    span = (row["b"] - row["a"]).total_seconds() if row["n"] else 0.0
    return {"handled": row["n"], "rejected": row["rejected"], "handled_span_s": round(span, 3)}


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("  (py-spy not found; pip install py-spy into the venv to profile)", file=sys.stderr)
        return None
    # --subprocesses: the relay's process too (service.relay_process).
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--subprocesses", "--rate", "250", "--format", "raw",
                             "--output", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        try:
            profiler.wait(30)
        except subprocess.TimeoutExpired:
            profiler.kill()


async def seed_users(producer: AIOKafkaProducer, cast: Cast) -> None:
    for e in cast.user_events():
        await producer.send(topics.USER_EVENTS, e.model_dump_json().encode(), key=str(e.payload.user_id).encode())
    await producer.flush()


async def wait_for_users(dsn: str, count: int, system: System, timeout_s: float = 90) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while (await conn.fetchval("SELECT count(*) FROM users")) < count:
            system.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the service replicated fewer than {count} users in {timeout_s}s")
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def insert_users(dsn: str, cast: Cast) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO users (user_id, email, role, customer_id, active, updated_at) "
            "VALUES ($1, $2, $3, $4, true, now())",
            [(e.payload.user_id, e.payload.email, e.payload.role.value, e.payload.customer_id)
             for e in cast.user_events()])
    finally:
        await conn.close()


def _keep_log(log: Path) -> None:
    if log.exists():
        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, RESULTS / f"{log.stem}.log.tmp")


def _free_port() -> int:
    from service.devstack import free_port

    return free_port()


async def service_target(run: Run, stack: contextlib.AsyncExitStack) -> tuple[Target, dict[str, Any]]:
    root = run.args.service_root.resolve() if run.args.service_root is not None else None
    url = await run.servers.database("bench_service", root)
    http_port = _free_port()
    system = System("service", [sys.executable, "-m", "service.cli", "run"], {
        "TICKETS_DATABASE_URL": url, "TICKETS_INSTANCE_ID": "bench", "TICKETS_HTTP_PORT": str(http_port),
        "TICKETS_LOG_FORMAT": "json", "TICKETS_AUTH_MODE": "trust",
    }, run.scratch / "service.log")
    if root is not None:  # an A/B run of a changed service: import it (and its migrations) from there
        system.cwd = root
        system.env["PYTHONPATH"] = _python_path(root)
    stack.callback(_keep_log, system.log)
    stack.callback(system.stop)

    async def configure(bootstrap: str) -> None:
        group = f"bench-{uuid.uuid4().hex[:8]}"
        await start_group_at_end(bootstrap, f"{group}.commands", [topics.COMMANDS])
        # the new user-events group reads whatever users the broker has from the start: idempotent upserts
        system.env |= {"TICKETS_KAFKA_BOOTSTRAP": bootstrap, "TICKETS_CONSUMER_GROUP": group}

    target = Target(system, asyncpg_dsn(url), configure, http_port)
    stack.push_async_callback(target.detach)
    say("service: replicating the user directory from users.events.v1 ...")
    t0 = time.perf_counter()
    await target.attach(run.servers)
    assert target.producer is not None
    system.start()
    await seed_users(target.producer, run.cast)
    await wait_for_users(target.dsn, len(run.cast.customers) + len(run.cast.agents), system)
    system.stop()
    info = {"how": "subprocess `tickets run` (python -m service.cli run), default settings",
            "users_replicated_after_start_s": round(time.perf_counter() - t0, 2)}
    return target, info


async def floor_target(run: Run, stack: contextlib.AsyncExitStack) -> tuple[Target, dict[str, Any]]:
    url = await run.servers.database("bench_floor")
    await insert_users(asyncpg_dsn(url), run.cast)
    system = System("floor", [], {}, run.scratch / "floor.log")
    stack.callback(_keep_log, system.log)
    stack.callback(system.stop)

    async def configure(bootstrap: str) -> None:
        group = f"bench-floor-{uuid.uuid4().hex[:8]}"
        await start_group_at_end(bootstrap, group, [topics.COMMANDS])
        system.argv = [sys.executable, "-m", "bench.floor", "--bootstrap", bootstrap, "--dsn", asyncpg_dsn(url),
                       "--group", group]

    target = Target(system, asyncpg_dsn(url), configure)
    stack.push_async_callback(target.detach)
    return target, {"how": "subprocess `python -m bench.floor` (aiokafka + asyncpg, batches of up to 200)"}


# ---- report ----------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    from importlib.metadata import version

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {
        "hostname": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "packages": {p: version(p) for p in ("faststream", "aiokafka", "asyncpg", "sqlalchemy", "pydantic")},
        "git_commit": git("rev-parse", "--short", "HEAD"), "git_dirty": bool(git("status", "--porcelain")),
    }


def median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def summarise(info: dict[str, Any], rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per system: medians over the rounds (and the 200/s latencies pooled), every round kept."""
    drains = [r["drain"] for r in rounds]
    lat = [r["latency_200"] for r in rounds]
    pooled = sorted(x for phase in lat for x in phase["_samples"])
    last = rounds[-1]
    for r in rounds:
        for key in ("latency_200", "latency_half_max"):
            r.get(key, {}).pop("_samples", None)
    parts = drains[0]["cpu_us_per_command"].keys()
    return info | {
        "drain": {
            "commands_per_s": median([d["commands_per_s"] for d in drains]),
            "commands_per_s_each_round": [d["commands_per_s"] for d in drains],
            "cpu_us_per_command": {p: median([d["cpu_us_per_command"][p] for d in drains]) for p in parts},
            **({"mean_batch_size": median([d["mean_batch_size"] for d in drains]),
                "mean_batch_ms": median([d["mean_batch_ms"] for d in drains])} if "mean_batch_ms" in drains[0] else {}),
        },
        "latency_200": {
            "p50_ms": median([x["p50_ms"] for x in lat]), "p99_ms": median([x["p99_ms"] for x in lat]),
            "p99_ms_each_round": [x["p99_ms"] for x in lat],
            "pooled": {"samples": len(pooled), **_percentiles(pooled)},
        },
        "latency_half_max": last.get("latency_half_max"),
        "idle": last.get("idle"),
        "rounds": rounds,
    }


#: A round compares the two systems only if neither's drain or 200/s phase lost more than this many
#: cores to the host's other guests (steal): on a shared VM host a few tenths of a core stolen from one
#: system's phase moves its ratio by 25 % or more (bench/README.md, "A contended host").
QUIET_STOLEN_CORES = 0.05

#: Issue 12's targets, each to hold in every round of a run, not only in the median of the rounds.
TARGET_THROUGHPUT_AT_LEAST = 0.90
TARGET_P99_AT_MOST = 1.3


def _stolen_cores(*rounds: dict[str, Any]) -> float:
    """The most cores stolen in any of these rounds' drain and 200/s phases (0 where not measured)."""
    return round(max((x[k]["cpu_s"].get("stolen", 0.0) / x[k]["cpu_s"]["wall"]
                      for x in rounds for k in ("drain", "latency_200") if "cpu_s" in (x.get(k) or {})),
                     default=0.0), 2)


def ratios(service: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    """Service/floor, round by round (each round runs both back to back, so they share the machine's
    load of the moment), and the median of those."""
    pairs = list(zip(service["rounds"], floor["rounds"], strict=True))
    throughput = [_ratio(s["drain"]["commands_per_s"], f["drain"]["commands_per_s"], 3) for s, f in pairs]
    p99 = [_ratio(s["latency_200"]["p99_ms"], f["latency_200"]["p99_ms"], 2) for s, f in pairs]
    t, p = median(throughput), median(p99)
    stolen = [_stolen_cores(s, f) for s, f in pairs]
    return {
        "throughput_service_over_floor": t, "throughput_each_round": throughput,
        "stolen_cores_each_round": stolen, "quiet_each_round": [x <= QUIET_STOLEN_CORES for x in stolen],
        "p99_at_200_service_over_floor": p, "p99_at_200_each_round": p99,
        "cpu_per_command_floor_over_service": _ratio(floor["drain"]["cpu_us_per_command"]["system_under_test"],
                                                     service["drain"]["cpu_us_per_command"]["system_under_test"], 3),
        "target_throughput_at_least": TARGET_THROUGHPUT_AT_LEAST, "target_p99_at_most": TARGET_P99_AT_MOST,
        "throughput_target_met": _every(throughput, lambda x: x >= TARGET_THROUGHPUT_AT_LEAST),
        "p99_target_met": _every(p99, lambda x: x <= TARGET_P99_AT_MOST),
    }


def _every(values: list[float | None], ok: Callable[[float], bool]) -> bool:
    """Whether every round's ratio is known and within its target."""
    return bool(values) and all(v is not None and ok(v) for v in values)


def _ratio(a: float | None, b: float | None, digits: int) -> float | None:
    return round(a / b, digits) if a and b else None


def table(figures: dict[str, Any]) -> str:
    s, f, r = figures["service"], figures["floor"], figures["ratios"]
    n = len(s["rounds"])

    def row(label: str, a: Any, b: Any, ratio: str = "") -> str:
        return f"{label:<38}{_fmt(a):>15}{_fmt(b):>15}   {ratio}"

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    sd, fd = s["drain"], f["drain"]
    lines = [row("", "service", "floor", "service/floor"), "-" * 90,
             row(f"drain: commands/s (median of {n} rounds)", sd["commands_per_s"], fd["commands_per_s"],
                 f"{_fmt(r['throughput_service_over_floor'])}  (median of the rounds' ratios; every round >= "
                 f"{TARGET_THROUGHPUT_AT_LEAST:.2f}: {met(r['throughput_target_met'])})"),
             row("drain: CPU µs/command, process", sd["cpu_us_per_command"]["system_under_test"],
                 fd["cpu_us_per_command"]["system_under_test"],
                 f"{_fmt(r['cpu_per_command_floor_over_service'])}  (floor/service)")]
    for part in ("postgres", "broker"):
        if part in sd["cpu_us_per_command"]:
            lines.append(row(f"drain: CPU µs/command, {part}", sd["cpu_us_per_command"][part],
                             fd["cpu_us_per_command"][part]))
    sl, fl = s["latency_200"], f["latency_200"]
    lines += [row("200/s: p50 latency, ms (median)", sl["p50_ms"], fl["p50_ms"]),
              row("200/s: p99 latency, ms (median)", sl["p99_ms"], fl["p99_ms"],
                  f"{_fmt(r['p99_at_200_service_over_floor'])}  (median of the rounds' ratios; every round <= "
                  f"{TARGET_P99_AT_MOST}: {met(r['p99_target_met'])})"),
              row("200/s: p99 / max, ms (all rounds)", _pair(sl["pooled"], "p99_ms", "max_ms"),
                  _pair(fl["pooled"], "p99_ms", "max_ms"))]
    sh, fh = s["latency_half_max"], f["latency_half_max"]
    if sh and fh:
        lines += [row("half max: rate (commands/s)", sh["achieved_rate"], fh["achieved_rate"]),
                  row("half max: p50 / p99 latency, ms", _pair(sh, "p50_ms", "p99_ms"), _pair(fh, "p50_ms", "p99_ms"))]
    if s["idle"] and f["idle"]:
        def idle(x: dict[str, Any]) -> float:
            return round(x["idle"]["cpu_s"]["system_under_test"] / x["idle"]["cpu_s"]["wall"], 2)

        lines.append(row("idle: CPU of the process (cores)", idle(s), idle(f)))
    def missing(x: dict[str, Any]) -> str:
        results = sum(r["drain"]["missing_results"] for r in x["rounds"])
        events = sum(p["missing_events"] for r in x["rounds"] for k, p in r.items() if k.startswith("latency"))
        return f"{results} / {events}"

    lines.append(row("missing results / events (must be 0)", missing(s), missing(f)))
    if missing(s) != "0 / 0" or missing(f) != "0 / 0":
        lines.append("!! a system did not answer every command: its figures are not valid; "
                     "see its log in bench/results/")
    lines += ["", f"{'round':<8}{'drain/s service':>16}{'floor':>9}{'ratio':>8}{'p99@200 service':>18}{'floor':>9}"
                  f"{'ratio':>8}{'other load (cores)':>20}{'stolen (cores)':>16}{'quiet':>7}"]
    for i, (a, b) in enumerate(zip(s["rounds"], f["rounds"], strict=True)):
        phases = [p["cpu_s"] for x in (a, b) for p in x.values() if isinstance(p, dict) and "cpu_s" in p]
        busy = [c["everything_else"] / c["wall"] for c in phases]
        lines.append(f"{a['round']:<8}{_fmt(a['drain']['commands_per_s']):>16}{_fmt(b['drain']['commands_per_s']):>9}"
                     f"{_fmt(r['throughput_each_round'][i]):>8}{_fmt(a['latency_200']['p99_ms']):>18}"
                     f"{_fmt(b['latency_200']['p99_ms']):>9}{_fmt(r['p99_at_200_each_round'][i]):>8}"
                     f"{max(0.0, min(busy)):>13.2f}–{max(0.0, max(busy)):.2f}"
                     f"{_stolen_cores(a, b):>16.2f}{'yes' if _stolen_cores(a, b) <= QUIET_STOLEN_CORES else 'no':>7}")
    load = figures["machine"]["load_average_at_start"]
    lines.append(f"(other load: CPU used by everything but the bench, the system, PostgreSQL and the broker; "
                 f"stolen: the most cores the host gave to others while this VM's vCPUs were ready (steal) in "
                 f"either system's drain or 200/s phase; quiet: at most {QUIET_STOLEN_CORES}, the only rounds "
                 f"whose ratios compare the two systems; {os.cpu_count()} cores; "
                 f"load average at start {load})")
    return "\n".join(lines)


def _pair(x: dict[str, Any], a: str, b: str) -> str:
    return f"{_fmt(x[a])} / {_fmt(x[b])}"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 10 else f"{value:,.0f}" if value >= 1000 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="tickets-bench-"))
    servers = Servers(scratch)
    rng = random.Random(args.seed)
    figures: dict[str, Any] = {
        "benchmark": "commands", "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(), "mix": list(MIX), "events_per_ticket": EVENTS_PER_SCRIPT,
        "config": {"rounds": args.rounds, "drain_commands": args.drain_commands,
                   "latency_seconds": args.latency_seconds, "fixed_rate": FIXED_RATE, "window_tickets": WINDOW,
                   "seed": args.seed, "profiled": args.profile,
                   "service_root": str(args.service_root) if args.service_root else None,
                   "postgres": "external" if servers.server_url else "embedded",
                   "kafka": "external" if servers.external_kafka else "embedded (a fresh Tansu per turn)"},
    }
    started = time.perf_counter()
    try:
        async with contextlib.AsyncExitStack() as stack:
            say("starting PostgreSQL ...")
            await asyncio.to_thread(servers.start)
            run = Run(args, servers, Cast.make(rng), rng, scratch)
            service, service_info = await service_target(run, stack)
            floor, floor_info = await floor_target(run, stack)
            done: dict[str, list[dict[str, Any]]] = {"service": [], "floor": []}
            for number in range(1, args.rounds + 1):
                order = (service, floor) if number % 2 else (floor, service)  # alternate who goes first
                for t in order:
                    say(f"round {number}/{args.rounds}: {t.name}")
                    drained = [r["drain"]["commands_per_s"] for r in done[t.name]]
                    done[t.name].append(await run.round(t, number, number == args.rounds, drained))
            figures["service"] = summarise(service_info, done["service"])
            figures["floor"] = summarise(floor_info, done["floor"])
            figures["ratios"] = ratios(figures["service"], figures["floor"])
    finally:
        await servers.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    figures["total_seconds"] = round(time.perf_counter() - started, 1)
    return figures


def _python_path(root: Path) -> str:
    """The other checkout's service and its own contracts package, ahead of the installed ones."""
    return os.pathsep.join([str(root), str(root / "contracts")])


def main() -> None:
    parser = argparse.ArgumentParser(description="Command-side benchmark: the service against a minimal floor.")
    parser.add_argument("--rounds", type=int, default=3, help="drain + 200/s rounds per system (default 3)")
    parser.add_argument("--drain-commands", type=int, default=12_000, help="backlog per round (default 12000)")
    parser.add_argument("--latency-seconds", type=float, default=8.0, help="length of each fixed-rate phase")
    parser.add_argument("--timeout", type=float, default=120.0, help="longest wait for one phase's output")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--profile", action="store_true",
                        help="sample each system with py-spy during its first drain and 200/s phase into "
                             "bench/results/<system>-{drain,200s}.pyspy.tmp (collapsed stacks; costs CPU, "
                             "so do not quote the figures of a profiled run)")
    parser.add_argument("--output", type=Path, default=RESULTS / "commands.json")
    parser.add_argument("--timeline", type=Path, default=None,
                        help="write each fixed-rate phase's commands (seconds since the first was due, latency "
                             "in ms) to <dir>/<system>-<rate>s-<time>.tsv, to see when the slow ones came")
    parser.add_argument("--service-root", type=Path, default=None,
                        help="run the service (and its migrations) from this checkout instead, e.g. a git "
                             "worktree with a proposed change")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures = asyncio.run(main_async(args))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print()
    print(table(figures))
    print(f"\nsaved to {args.output} (total {figures['total_seconds']} s)")


if __name__ == "__main__":
    main()
