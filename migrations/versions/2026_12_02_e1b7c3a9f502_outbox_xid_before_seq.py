"""outbox: a transaction that inserts history or inbox rows has its transaction id before their seq

The relay reads the unpublished rows from a lower bound on ``seq`` (service/adapters/relay.py,
``ScanBounds``) instead of from the start of the partial "unpublished" indexes, which keep an entry
for every row marked since the last vacuum: with a million marked rows a read walked ~2,800 index
pages, 5 ms per relay round, warm (bench/relay_read.sql). A bound may only pass a ``seq`` once no
transaction that could still commit a row below it is running, which the relay tells from
``pg_current_snapshot()`` — for transactions that have an id. A row's ``seq`` comes from its
identity column's default, evaluated before the row is written, i.e. before PostgreSQL would assign
the transaction its id. These statement-level ``BEFORE INSERT`` triggers assign it first (statement
triggers fire before the statement produces its first row), whoever inserts: the service, a tool, a
``COPY``.

Upgrade: metadata only, instant (creating a function and two triggers). Old instances keep working
(their relays read from the start, as before).

Revision ID: e1b7c3a9f502
Revises: d6420cf6a748
Create Date: 2026-12-02 15:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = 'e1b7c3a9f502'
down_revision: str | None = 'd6420cf6a748'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("ticket_events", "processed_commands")


def upgrade() -> None:
    op.execute("""CREATE OR REPLACE FUNCTION tickets_outbox_xid_first() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_current_xact_id();
  RETURN NULL;
END $$""")
    for table in TABLES:
        op.execute(f"CREATE TRIGGER {table}_xid_first BEFORE INSERT ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION tickets_outbox_xid_first()")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_xid_first ON {table}")
    op.execute("DROP FUNCTION IF EXISTS tickets_outbox_xid_first()")
