"""ticket merges: tickets.merged_into and tickets.merged_from (ticket.merge)

Both are filled by the command side only; ``merged_from`` lists the sources oldest merge first.
Adding a nullable column and one with a constant default is a catalogue change only (PostgreSQL
≥ 11): no table rewrite.

Revision ID: b7d1e5a0c3f2
Revises: 5e7a1c0d9b42
Create Date: 2026-12-01 22:40:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'b7d1e5a0c3f2'
down_revision: str | None = '5e7a1c0d9b42'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tickets", sa.Column("merged_into", postgresql.UUID(as_uuid=True), nullable=True))
    op.add_column("tickets", sa.Column("merged_from", postgresql.ARRAY(postgresql.UUID(as_uuid=True)),
                                       nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    op.drop_column("tickets", "merged_from")
    op.drop_column("tickets", "merged_into")
