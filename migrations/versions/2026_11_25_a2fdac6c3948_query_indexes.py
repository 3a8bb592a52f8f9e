"""indexes for the query side (ticket.list / ticket.my filters and sorts, title search)

Every sort key ends in ``id`` so keyset pagination (``(key…, id) < (:key…, :id)``) is one index
range. The ticket indexes are partial (``deleted_at IS NULL``): only admins ever read deleted
tickets, so the indexes every other query walks skip them and a capped ``count(*)`` can be an
index-only scan. ``pg_trgm`` is a trusted extension (PostgreSQL ≥ 13): the database owner may
create it. Plain ``CREATE INDEX IF NOT EXISTS`` inside the migration's transaction: it blocks
writes to ``tickets`` while it builds (13 s on a million rows, 2 cores). On a big live table, build them
``CONCURRENTLY`` by hand first with the same names; this migration then skips them. docs/queries.md.

Revision ID: a2fdac6c3948
Revises: c2f51a414e1e
Create Date: 2026-11-25 22:30:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'a2fdac6c3948'
down_revision: str | None = 'c2f51a414e1e'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL")

#: name → columns; all on ``tickets``, all partial on live (non-deleted) tickets.
TICKET_INDEXES: dict[str, list[str]] = {
    "ix_tickets_created": ["created_at", "id"],
    "ix_tickets_updated": ["updated_at", "id"],
    "ix_tickets_priority": ["priority_rank", "created_at", "id"],
    "ix_tickets_customer_created": ["customer_id", "created_at", "id"],
    "ix_tickets_assignee_created": ["assignee_id", "created_at", "id"],
    "ix_tickets_status_created": ["status", "created_at", "id"],
    "ix_tickets_category_created": ["category_id", "created_at", "id"],
}


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, columns in TICKET_INDEXES.items():
        op.create_index(name, "tickets", columns, postgresql_where=LIVE, if_not_exists=True)
    op.create_index("ix_tickets_title_trgm", "tickets", ["title"], postgresql_using="gin",
                    postgresql_ops={"title": "gin_trgm_ops"}, if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_tickets_title_trgm", table_name="tickets")
    for name in reversed(TICKET_INDEXES):
        op.drop_index(name, table_name="tickets")
    # pg_trgm stays: other schemas in the database may use it.
