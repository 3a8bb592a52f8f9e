"""The command path without Kafka: the bench's mix, decoded and run through the message bus on
PostgreSQL, batch after batch, in this process — to see where a batch's time goes.

    .venv/bin/python -m bench.batches                      # 12,000 commands in batches of 200
    .venv/bin/python -m bench.batches --profile out.prof    # and a cProfile of the batches
    .venv/bin/python -m bench.batches --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

Prints (and saves to --output) per command: wall time, process CPU, the SQL statements issued
(through SQLAlchemy and straight on the asyncpg connection; transaction control not counted) and
their share of the wall time, and the server-side CPU of the batch's PostgreSQL backend (from
/proc, when the server runs on this machine; 0 otherwise). Decoding is measured apart from the bus. No relay
runs: the outbox rows stay unpublished, as they would during a drain before the relay catches up.
Without --database-url an embedded PostgreSQL is started.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from bench.commands import Cast, Servers, _proc_cpu, asyncpg_dsn, insert_users, workload
from service.adapters.auth import ActorResolver
from service.adapters.unit_of_work import SqlUnitOfWork
from service.entrypoints.decoding import decode_command
from service.handlers.bus import MessageBus
from service.handlers.messages import Incoming

async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    cast = Cast.make(rng)
    wires = workload(rng, cast, args.commands)
    servers = Servers(Path(tempfile.mkdtemp(prefix="tickets-batches-")), server_url=args.database_url)
    servers.start()
    try:
        url = await servers.database("bench_batches")
        await insert_users(asyncpg_dsn(url), cast)
        return await _measure(args, url, wires)
    finally:
        await servers.stop()


async def _measure(args: argparse.Namespace, url: str, wires: list[Any]) -> dict[str, Any]:
    resolver = ActorResolver("trust")
    records = [SimpleNamespace(value=w.value, key=w.key, headers=[], topic="tickets.commands.v1", partition=0,
                               offset=i) for i, w in enumerate(wires)]
    started = time.process_time()
    items: list[Incoming] = [decode_command(r, resolver, 1_048_576) for r in records]  # type: ignore[misc]
    decode_cpu = time.process_time() - started

    engine = create_async_engine(url, pool_size=1, max_overflow=0)
    statements: Counter[str] = Counter()
    sql_wall = [0.0]

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if not executemany:  # asyncpg's executemany is counted by the query logger below
            conn.info["t0"] = time.perf_counter()
            statements[" ".join(statement.split())[:90]] += 1

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if not executemany:
            sql_wall[0] += time.perf_counter() - conn.info.pop("t0")

    def logged(query: Any) -> None:
        """Statements asyncpg runs by text: those sent straight to it and SQLAlchemy's executemany
        (SQLAlchemy's single executes go through prepared statements, which asyncpg does not log)."""
        if query.query.split(None, 1)[0].rstrip(";").upper() not in ("BEGIN", "COMMIT", "ROLLBACK"):
            sql_wall[0] += query.elapsed
            statements[" ".join(query.query.split())[:90]] += 1

    async with engine.connect() as conn:  # the pool's one connection: its backend is the batches'
        backend = (await conn.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        driver.add_query_logger(logged)
    bus = MessageBus(lambda: SqlUnitOfWork(engine))
    batches = [items[i:i + args.batch] for i in range(0, len(items), args.batch)]
    profiler = cProfile.Profile() if args.profile else None
    wall0, cpu0, pg0 = time.perf_counter(), time.process_time(), _proc_cpu(backend)
    if profiler:
        profiler.enable()
    statuses: Counter[str] = Counter()
    for batch in batches:
        for outcome in await bus.handle(batch):
            statuses[outcome.status] += 1
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    await asyncio.sleep(0)  # the query logger's callbacks run soon after each statement
    wall, cpu, pg = time.perf_counter() - wall0, time.process_time() - cpu0, _proc_cpu(backend) - pg0
    async with engine.connect() as conn:
        sizes = (await conn.exec_driver_sql(
            "SELECT (SELECT avg(octet_length(body)) FROM ticket_events), "
            "(SELECT avg(octet_length(result)) FROM processed_commands)")).one()
    await engine.dispose()
    n = len(items)
    figures = {
        "commands": n, "batch_size": args.batch, "statuses": dict(statuses),
        "decode_cpu_us_per_command": round(1e6 * decode_cpu / n, 1),
        "bus_wall_us_per_command": round(1e6 * wall / n, 1),
        "bus_process_cpu_us_per_command": round(1e6 * cpu / n, 1),
        "postgres_backend_cpu_us_per_command": round(1e6 * pg / n, 1),
        "sql_wall_share": round(sql_wall[0] / wall, 3),
        "mean_bytes_event_body": round(float(sizes[0])), "mean_bytes_result": round(float(sizes[1])),
        "statements_per_batch": round(sum(statements.values()) / len(batches), 1),
        "statements": {k: round(v / len(batches), 2) for k, v in statements.most_common()},
        "profiled": bool(profiler),
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=12_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=os.environ.get("TICKETS_BENCH_DATABASE_URL"),
                        help="a PostgreSQL server (SQLAlchemy asyncpg URL); default: an embedded one")
    parser.add_argument("--profile", default=None, help="write a cProfile of the batches to this file")
    parser.add_argument("--output", type=Path, default=Path("bench/results/batches.json"))
    args = parser.parse_args()
    figures = asyncio.run(run(args))
    print(json.dumps({k: v for k, v in figures.items() if k != "statements"}, indent=2))
    for statement, per_batch in figures["statements"].items():
        print(f"{per_batch:8.2f}  {statement}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"benchmark": "batches", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                       time.gmtime()), **figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
