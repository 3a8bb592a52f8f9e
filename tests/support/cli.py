"""Run the ``tickets`` command as an operator would: a separate process with ``TICKETS_*`` settings."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass


@dataclass
class Ran:
    code: int
    out: str
    err: str


async def tickets(*args: str, database_url: str, bootstrap: str, timeout: float = 60.0, **env: str) -> Ran:
    """``tickets ARGS`` in a subprocess (without blocking the event loop the service may run in)."""
    environment = os.environ | {"TICKETS_DATABASE_URL": database_url, "TICKETS_KAFKA_BOOTSTRAP": bootstrap,
                                "TICKETS_LOG_FORMAT": "json"} | env
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", *args, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return Ran(process.returncode or 0, out.decode(), err.decode())


async def ok(*args: str, database_url: str, bootstrap: str, **env: str) -> str:
    """stdout of a ``tickets`` run that must succeed."""
    ran = await tickets(*args, database_url=database_url, bootstrap=bootstrap, **env)
    assert ran.code == 0, f"tickets {' '.join(args)} exited {ran.code}:\n{ran.err}"
    return ran.out
