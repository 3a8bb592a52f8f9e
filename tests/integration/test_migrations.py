"""Alembic migrations on real PostgreSQL: up, down and up again; the start-up schema check; and
the tables the code queries match the schema the migrations build."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.adapters.tables import metadata
from service.migrate import _scripts, SchemaNotAtHead, alembic_config, check_schema_at_head, head_revision, upgrade
from tests.support.infra import create_database, drop_database


@pytest.fixture
async def empty_url(database_server_url: str) -> AsyncIterator[str]:
    url = await create_database(database_server_url)
    yield url
    await drop_database(database_server_url, url)


@pytest.fixture
async def engine(empty_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(empty_url)
    yield engine
    await engine.dispose()


async def _upgrade(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)  # Alembic runs its own event loop


async def _downgrade(url: str, revision: str = "base") -> None:
    await asyncio.to_thread(command.downgrade, alembic_config(url), revision)


async def _schema(engine: AsyncEngine) -> tuple[set[str], set[str]]:
    """Tables and sequences of the public schema (sequences owned by identity columns excluded)."""
    async with engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        sequences = set((await conn.execute(text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'S' AND n.nspname = 'public' "
            "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'i')"
        ))).scalars())
    return tables, sequences


async def _revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def _diffs(engine: AsyncEngine) -> list[object]:
    def compare(sync_conn: object) -> list[object]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, metadata)

    async with engine.connect() as conn:
        return await conn.run_sync(compare)


EXPECTED_TABLES = {table.name for table in metadata.sorted_tables}
EXPECTED_SEQUENCES = set(metadata._sequences)


async def test_upgrade_downgrade_and_upgrade_again(empty_url: str, engine: AsyncEngine) -> None:
    assert await _schema(engine) == (set(), set())

    await _upgrade(empty_url)
    assert await _revision(engine) == head_revision()
    assert await _schema(engine) == (EXPECTED_TABLES | {"alembic_version"}, EXPECTED_SEQUENCES)

    await _downgrade(empty_url)
    assert await _revision(engine) is None
    assert await _schema(engine) == ({"alembic_version"}, set())

    await _upgrade(empty_url)
    assert await _revision(engine) == head_revision()
    assert await _schema(engine) == (EXPECTED_TABLES | {"alembic_version"}, EXPECTED_SEQUENCES)
    assert await _diffs(engine) == []


async def test_upgrade_at_head_again_changes_nothing(empty_url: str, engine: AsyncEngine) -> None:
    await _upgrade(empty_url)
    before = await _schema(engine)

    await _upgrade(empty_url)

    assert await _schema(engine) == before and await _revision(engine) == head_revision()


async def test_the_schema_check_refuses_an_unmigrated_database(engine: AsyncEngine) -> None:
    with pytest.raises(SchemaNotAtHead) as refused:
        await check_schema_at_head(engine)

    message = str(refused.value)
    assert "nothing" in message and str(head_revision()) in message and "tickets migrate" in message


async def test_the_schema_check_refuses_a_database_behind_head(empty_url: str, engine: AsyncEngine) -> None:
    await _upgrade(empty_url)
    first = [r.revision for r in _scripts().walk_revisions()][-1]  # the oldest revision this code knows
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = :rev"), {"rev": first})

    with pytest.raises(SchemaNotAtHead, match=first):
        await check_schema_at_head(engine)


async def test_the_schema_check_accepts_a_database_ahead_of_the_code(empty_url: str, engine: AsyncEngine) -> None:
    await _upgrade(empty_url)
    async with engine.begin() as conn:  # a newer release migrated first (rolling deploy)
        await conn.execute(text("UPDATE alembic_version SET version_num = 'a_revision_from_the_future'"))

    await check_schema_at_head(engine)  # does not raise


async def test_the_schema_check_passes_at_head(empty_url: str, engine: AsyncEngine) -> None:
    await _upgrade(empty_url)

    await check_schema_at_head(engine)  # does not raise


async def test_the_tables_of_the_code_match_the_migrated_schema(empty_url: str, engine: AsyncEngine) -> None:
    """Every column, type, default, constraint and index of ``service.adapters.tables`` — and no other
    — exists after the migrations: a model change without a migration (or the reverse) fails here."""
    await _upgrade(empty_url)

    assert await _diffs(engine) == []


_CATALOG = {
    "column": """SELECT table_name, column_name, data_type, udt_name, is_nullable, column_default,
                        is_identity, identity_generation
                 FROM information_schema.columns WHERE table_schema = 'public'""",
    "constraint": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
                     FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
    "index": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "sequence": """SELECT sequencename, data_type::text, start_value, increment_by
                   FROM pg_sequences WHERE schemaname = 'public'""",
}


async def _catalog(engine: AsyncEngine) -> set[tuple[object, ...]]:
    async with engine.connect() as conn:
        return {(kind, *row) for kind, sql in _CATALOG.items() for row in await conn.execute(text(sql))
                if "alembic_version" not in row}


async def test_the_migrations_build_exactly_what_the_tables_declare(
    empty_url: str, engine: AsyncEngine, database_server_url: str,
) -> None:
    """What autogenerate does not compare (partial-index predicates, operator classes, defaults as
    PostgreSQL stores them): the catalog of a migrated database equals that of ``create_all``."""
    await _upgrade(empty_url)
    declared_url = await create_database(database_server_url)
    declared = create_async_engine(declared_url)
    try:
        async with declared.begin() as conn:
            await conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))  # as the migration does
            await conn.run_sync(metadata.create_all)
        migrated, expected = await _catalog(engine), await _catalog(declared)
    finally:
        await declared.dispose()
        await drop_database(database_server_url, declared_url)

    assert sorted(migrated - expected, key=str) == [], "in the migrated schema only"
    assert sorted(expected - migrated, key=str) == [], "declared in service.adapters.tables only"


async def test_relay_progress_starts_exactly_from_the_published_marks_and_gives_them_back_on_downgrade(
    empty_url: str, engine: AsyncEngine,
) -> None:
    """Migration 3f8a2d61c0b7: ``max_seen`` is each outbox's highest seq and the holes are its rows
    not yet published; the downgrade marks what the progress says is published."""
    await _upgrade(empty_url, "e1b7c3a9f502")
    async with engine.begin() as conn:
        for n in range(1, 6):  # seqs 1..5; 3 and 5 not yet published
            published = None if n in (3, 5) else "now()"
            await conn.execute(text(
                "INSERT INTO ticket_events (event_id, ticket_id, ticket_version, type, internal, occurred_at, body,"
                f" published_at) VALUES (gen_random_uuid(), gen_random_uuid(), 1, 't', false, now(), '{{}}',"
                f" {published or 'NULL'})"))
        for n in range(1, 4):  # seqs 1..3; 1 not yet published
            published = None if n == 1 else "now()"
            await conn.execute(text(
                "INSERT INTO processed_commands (message_id, command_type, processed_at, status, result,"
                f" result_published_at) VALUES (gen_random_uuid(), 't', now(), 'accepted', '{{}}',"
                f" {published or 'NULL'})"))

    await _upgrade(empty_url)
    async with engine.connect() as conn:
        progress = {r.outbox: (r.max_seen, r.holes) for r in await conn.execute(
            text("SELECT outbox, max_seen, holes FROM relay_progress"))}
        indexes = set((await conn.execute(text("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%unpublished'"))
                       ).scalars())
    assert progress == {"ticket_events": (5, [3, 5]), "processed_commands": (3, [1])}
    assert indexes == set()

    async with engine.begin() as conn:  # the relay then published event 3 (5 and result 1 still wait)
        await conn.execute(text("UPDATE relay_progress SET holes = '{5}' WHERE outbox = 'ticket_events'"))
    await _downgrade(empty_url, "e1b7c3a9f502")
    async with engine.connect() as conn:
        events = (await conn.execute(text(
            "SELECT seq FROM ticket_events WHERE published_at IS NULL ORDER BY seq"))).scalars().all()
        results = (await conn.execute(text(
            "SELECT seq FROM processed_commands WHERE result_published_at IS NULL ORDER BY seq"))).scalars().all()
        indexes = set((await conn.execute(text("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%unpublished'"))
                       ).scalars())
    assert (events, results) == ([5], [1])
    assert indexes == {"ix_ticket_events_unpublished", "ix_processed_commands_unpublished"}
