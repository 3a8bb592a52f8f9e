"""Schema migrations: ``tickets migrate`` and the start-up check that the schema is at head."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``. Synchronous: Alembic's env runs its own event loop,
    so when called from inside a running loop the work moves to a short-lived thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(alembic_config(database_url), revision)
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(command.upgrade, alembic_config(database_url), revision).result()


def head_revision() -> str | None:
    return _scripts().get_current_head()


class SchemaNotAtHead(RuntimeError):
    pass


async def check_schema_at_head(engine: AsyncEngine) -> None:
    """Refuse to run against a database whose schema is older than this code's newest migration.

    A schema *newer* than the code (a revision this code does not know) is accepted with a warning:
    during a rolling deploy the new version migrates first while old instances still run, which is
    safe because migrations are written expand-then-contract (see docs/operations.md)."""
    async with engine.connect() as conn:
        current = await conn.run_sync(_current_revision)
    head = head_revision()
    if current == head:
        return
    known = {rev.revision for rev in _scripts().walk_revisions()}
    if current is None or current in known:
        raise SchemaNotAtHead(
            f"database schema is at {current or 'nothing'}, this service needs {head}: run `tickets migrate` first"
        )
    logging.getLogger(__name__).warning("database schema %s is newer than this code's %s", current, head)


def _current_revision(connection: Any) -> str | None:
    """Alembic logs its "Context impl …" lines when it configures a context: they belong to
    `tickets migrate`, not to every start, so they are silenced here (each line once)."""
    migration_log = logging.getLogger("alembic.runtime.migration")
    level = migration_log.level
    migration_log.setLevel(logging.WARNING)
    try:
        return MigrationContext.configure(connection).get_current_revision()  # type: ignore[no-any-return]
    finally:
        migration_log.setLevel(level)


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("postgresql+asyncpg://unused/"))
