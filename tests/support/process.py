"""The service as a separate OS process (``python -m service.cli run``), to kill and restart it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from service.devstack import free_port

from .waiting import eventually


class ServiceProcess:
    def __init__(self, database_url: str, bootstrap: str, log_dir: Path, *, group: str, name: str) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"{name}.log"
        self.env = os.environ | {
            "TICKETS_DATABASE_URL": database_url, "TICKETS_KAFKA_BOOTSTRAP": bootstrap,
            "TICKETS_CONSUMER_GROUP": group, "TICKETS_INSTANCE_ID": name, "TICKETS_HTTP_PORT": str(self.port),
            "TICKETS_LOG_FORMAT": "json", "TICKETS_HEARTBEAT_INTERVAL_S": "1", "TICKETS_RETRY_MAX_BACKOFF_S": "1",
            "TICKETS_BATCH_MAX_RECORDS": "50",
            # The relay in its child process: the kills and restarts here are what it must survive.
            "TICKETS_RELAY_PROCESS": "true",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "service.cli", "run"], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        await eventually(self.ready, timeout=60, interval=0.2, what=f"{self.log_path.stem} ready")
        return self

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"service exited with {self.proc.returncode}; see {self.log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM: graceful shutdown; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def group_gone(self) -> bool:
        """No live process of this service's session is left: its relay process neither."""
        assert self.proc is not None
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # exited meanwhile
            if int(fields[2]) == self.proc.pid and fields[0] != "Z":  # process group; zombies are gone
                return False
        return True

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
