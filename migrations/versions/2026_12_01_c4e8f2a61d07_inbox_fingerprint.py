"""inbox fingerprint: processed_commands.fingerprint (scoped, bound idempotency keys)

A hash of the authenticated sender and the command's type and payload. A stored result is re-sent
only to a command with the same message_id AND the same fingerprint; rows from before this
migration have none and are matched by message_id alone, as before.

Revision ID: c4e8f2a61d07
Revises: 5b7e0c2d9a41
Create Date: 2026-12-01 23:20:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'c4e8f2a61d07'
down_revision: str | None = '5b7e0c2d9a41'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("processed_commands", sa.Column("fingerprint", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("processed_commands", "fingerprint")
