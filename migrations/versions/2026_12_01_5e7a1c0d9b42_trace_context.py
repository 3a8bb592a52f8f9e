"""W3C trace context with every history event and command result (the outbox rows)

The relay sends ``traceparent``/``tracestate`` as headers of the event or result, so a command's
trace continues in whatever consumes them. Nullable columns, no default: adding them rewrites
nothing and old rows (and commands that came without a trace) simply have none.

Revision ID: 5e7a1c0d9b42
Revises: a2fdac6c3948
Create Date: 2026-12-01 21:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '5e7a1c0d9b42'
down_revision: str | None = 'a2fdac6c3948'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("ticket_events", "processed_commands")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("traceparent", sa.Text(), nullable=True))
        op.add_column(table, sa.Column("tracestate", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        op.drop_column(table, "tracestate")
        op.drop_column(table, "traceparent")
