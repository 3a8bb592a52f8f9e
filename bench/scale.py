"""Scale-out: the command benchmark's mix drained by 1, 2 and 4 service instances in one consumer group.

    .venv/bin/python -m bench.scale                         # 1, 2, 4 instances; bench/results/scale.json
    .venv/bin/python -m bench.scale --instances 1 2 --commands 20000

For each instance count N, on a fresh database and a fresh embedded broker (8 partitions): N
instances start in one consumer group and the bench waits until every one is ready (subscribers
joined) — then a backlog of ``--commands`` commands is produced and drained. Figures:

- ``commands_per_s``: results per second from the first to the last result;
- ``cpu_us_per_command``: CPU of all service processes, PostgreSQL and the broker, per command;
- ``scale_in`` (N > 1): a steady 200/s during which one instance is stopped; ``longest_gap_s``
  between two consecutive results is the rebalance pause, ``max_result_latency_s`` its cost to
  the unluckiest command;
- ``batches_per_instance`` and ``relaying_instances`` from each instance's /metrics (the outbox
  relay is a singleton: one instance relays for all).

Users go straight into each database (as in the floor of ``bench.commands``). The machine has 2
cores: every figure here shares them with PostgreSQL, the broker and this process; see
docs/scaling.md for how to read them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from ticket_contracts import topics

from bench.commands import (
    RESULTS,
    CpuMeter,
    Observer,
    Servers,
    System,
    _free_port,
    _proc_cpu,
    _tree_cpu,
    asyncpg_dsn,
    insert_users,
    machine,
    produce_all,
    produce_at_rate,
    say,
    scrape_metrics,
    start_group_at_end,
    workload,
)
from bench.commands import Cast


async def one_count(n: int, args: argparse.Namespace, servers: Servers, scratch: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    cast = Cast.make(rng)
    url = await servers.database(f"bench_scale_{n}")
    await insert_users(asyncpg_dsn(url), cast)
    bootstrap, broker_pid = await servers.broker()
    group = f"scale-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(bootstrap, f"{group}.commands", [topics.COMMANDS])
    observer = Observer(bootstrap)
    await observer.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, max_batch_size=256 << 10)
    await producer.start()
    ports = [_free_port() for _ in range(n)]
    instances = [System(f"service-{i}", [sys.executable, "-m", "service.cli", "run"], {
        "TICKETS_DATABASE_URL": url, "TICKETS_INSTANCE_ID": f"scale-{n}-{i}", "TICKETS_HTTP_PORT": str(ports[i]),
        "TICKETS_LOG_FORMAT": "json", "TICKETS_AUTH_MODE": "trust", "TICKETS_KAFKA_BOOTSTRAP": bootstrap,
        "TICKETS_CONSUMER_GROUP": group,
    }, scratch / f"service-{n}-{i}.log") for i in range(n)]
    try:
        for system in instances:
            system.start()
        await _all_ready(ports, instances, args.timeout)
        await asyncio.sleep(JOIN_SETTLE_S)  # the last join's rebalance is over before the backlog comes
        wires = workload(rng, cast, args.commands)
        ids = [w.message_id for w in wires]
        postmaster = servers.postmaster_pid
        meter = CpuMeter({
            "service": lambda: sum(_tree_cpu(s.pid) for s in instances if s.process is not None),
            "postgres": (lambda: _tree_cpu(postmaster)) if postmaster else (lambda: 0.0),
            "broker": (lambda: _proc_cpu(broker_pid)) if broker_pid else (lambda: 0.0),
        })
        phase: dict[str, Any] = {"instances": n, "commands": len(ids)}
        with meter.phase(phase):
            await produce_all(producer, wires)
            missing = await observer.wait_for(ids, observer.results, args.timeout)
            for system in instances:
                system.check()
        arrivals = sorted(observer.results[i] for i in ids if i in observer.results)
        per_instance = [await scrape_metrics(port) for port in ports]
        phase |= {
            "missing_results": missing,
            "commands_per_s": round((len(arrivals) - 1) / (arrivals[-1] - arrivals[0]), 1),
            "batches_per_instance": [int(m.get("tickets_command_batch_size_count", 0)) for m in per_instance],
            "relaying_instances": sum(1 for m in per_instance if m.get("tickets_relay_active")),
        }
        phase["cpu_us_per_command"] = {k: round(v / len(arrivals) * 1e6) for k, v in phase["cpu_s"].items()
                                       if k in ("service", "postgres", "broker")}
        if n > 1:
            phase["scale_in"] = await _scale_in(rng, cast, producer, observer, instances, args)
        say(f"{n} instance(s): {phase['commands_per_s']} commands/s, batches per instance "
            f"{phase['batches_per_instance']}, CPU µs/command {phase['cpu_us_per_command']}, "
            f"scale-in pause {phase.get('scale_in', {}).get('longest_gap_s')} s")
        return phase
    finally:
        for system in instances:
            system.stop()
        await producer.stop()
        await observer.stop()
        servers.release(bootstrap)


JOIN_SETTLE_S = 2.0
STREAM_RATE, STREAM_SECONDS, STOP_AT_S = 200.0, 14.0, 3.0


async def _all_ready(ports: list[int], instances: list[System], timeout_s: float) -> None:
    """Every instance answers /readyz 200: schema checked, broker connected, its subscribers joined."""
    deadline = time.monotonic() + timeout_s
    pending = set(ports)
    while pending:
        for system in instances:
            system.check()
        for port in list(pending):
            with contextlib.suppress(OSError):
                status = await asyncio.to_thread(_status, f"http://127.0.0.1:{port}/readyz")
                if status == 200:
                    pending.discard(port)
        if time.monotonic() > deadline:
            raise TimeoutError(f"instances on ports {sorted(pending)} never became ready")
        await asyncio.sleep(0.2)


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


async def _scale_in(rng: random.Random, cast: Cast, producer: AIOKafkaProducer, observer: Observer,
                    instances: list[System], args: argparse.Namespace) -> dict[str, Any]:
    """A steady 200/s; after STOP_AT_S one instance is stopped (SIGTERM: it finishes its batch, leaves).
    The group rebalances its partitions to the others: the longest gap between two consecutive
    results is the pause (on the embedded broker a leaving member is noticed only at its session
    timeout, see docs/scaling.md)."""
    wires = workload(rng, cast, int(STREAM_RATE * STREAM_SECONDS))
    stopper = asyncio.create_task(_stop_later(instances[-1], STOP_AT_S))
    due = await produce_at_rate(producer, wires, STREAM_RATE)
    await stopper
    ids = list(due)
    missing = await observer.wait_for(ids, observer.results, args.timeout)
    arrivals = sorted(observer.results[i] for i in ids if i in observer.results)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    late = sorted(observer.results[i] - due[i] for i in ids if i in observer.results)
    return {"rate": STREAM_RATE, "commands": len(ids), "missing_results": missing,
            "longest_gap_s": round(max(gaps), 3) if gaps else None,
            "max_result_latency_s": round(late[-1], 3) if late else None}


async def _stop_later(system: System, after_s: float) -> None:
    await asyncio.sleep(after_s)
    await asyncio.to_thread(system.stop)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="tickets-scale-"))
    servers = Servers(scratch)
    servers.start()
    try:
        counts = [await one_count(n, args, servers, scratch) for n in args.instances]
    finally:
        await servers.stop()
    return {"benchmark": "scale", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(), "commands": args.commands, "counts": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--commands", type=int, default=30_000)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--output", type=Path, default=RESULTS / "scale.json")
    args = parser.parse_args()
    figures = asyncio.run(main_async(args))
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    say(f"saved to {args.output}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
