"""What a freshly started instance costs before its first record: the CPU of the service and of the
embedded broker over the first seconds after `ready`, with no traffic at all.

    .venv/bin/python -m bench.startup_idle            # bench/results/startup_idle.json

The service runs in this process (nothing else does meanwhile), on an embedded broker and a fresh
database (embedded PostgreSQL, or ``TICKETS_BENCH_DATABASE_URL``'s server). The window ends before
the ten seconds after which an idle subscriber used to switch to the long fetch wait: it is what a
subscriber with nothing to read costs while an instance restarted under a backlog drains it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.commands import Servers, _proc_cpu

RESULTS = Path(__file__).with_name("results")


async def measure(window_s: float) -> dict[str, object]:
    from service.app import running
    from service.devstack.kafka import EmbeddedKafka
    from service.devstack.topics import ensure_topics
    from service.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="tickets-idle-") as scratch:
        servers = Servers(Path(scratch))
        servers.start()
        broker = EmbeddedKafka(Path(scratch))
        broker.start()
        try:
            await ensure_topics(broker.bootstrap)
            url = await servers.database("tickets_bench_idle")
            settings = load_settings(database_url=url, kafka_bootstrap=broker.bootstrap, http_port=0, auth_mode="trust")
            async with running(settings) as rt:
                waits = {",".join(s.topic_names): s.consumer._fetcher._fetch_max_wait_ms  # type: ignore[attr-defined]
                         for s in rt.broker.subscribers}
                assert broker._process is not None
                pids = {"service": os.getpid(), "broker": broker._process.pid}
                before, started = {k: _proc_cpu(p) for k, p in pids.items()}, time.monotonic()
                await asyncio.sleep(window_s)
                wall = time.monotonic() - started
                cores = {k: round((_proc_cpu(p) - before[k]) / wall, 3) for k, p in pids.items()}
        finally:
            broker.stop()
            await servers.stop()
    return {"at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.node(),
            "window_s": round(wall, 2), "fetch_wait_ms_at_ready": waits, "cores": cores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=float, default=6.0, help="seconds measured after ready (keep < 10)")
    parser.add_argument("--output", type=Path, default=RESULTS / "startup_idle.json")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.window))
    print(json.dumps(figures, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
