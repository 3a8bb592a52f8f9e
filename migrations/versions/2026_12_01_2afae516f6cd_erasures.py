"""erasures: the plan and progress of each user.erased (GDPR art. 17)

``erasures`` has one row per erased user (so a second ``user.erased`` is a no-op, and the replica
never takes the user's address back); ``erasure_commands`` one row per ticket to redact, with the
``ticket.redact`` command's id and when it was put on the commands topic — resuming after a crash
sends what is not marked sent, under the same ids (the inbox makes repeats no-ops). Ids only: no
words, no addresses. See docs/operations.md.

Revision ID: 2afae516f6cd
Revises: 9e332d8961c3
Create Date: 2026-12-01 22:30:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision: str = '2afae516f6cd'
down_revision: str | None = '9e332d8961c3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("message_id", UUID(as_uuid=True), nullable=False),
        sa.Column("requested_at", TZ, nullable=False),
        sa.Column("tickets_whole", sa.Integer(), nullable=False),
        sa.Column("tickets_authored", sa.Integer(), nullable=False),
        sa.Column("commands_sent", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("done_at", TZ),
        sa.PrimaryKeyConstraint("user_id", name="pk_erasures"),
    )
    op.create_table(
        "erasure_commands",
        sa.Column("user_id", UUID(as_uuid=True), nullable=False),
        sa.Column("ticket_id", UUID(as_uuid=True), nullable=False),
        sa.Column("author_only", sa.Boolean(), nullable=False),
        sa.Column("command_id", UUID(as_uuid=True), nullable=False),
        sa.Column("sent_at", TZ),
        sa.ForeignKeyConstraint(["user_id"], ["erasures.user_id"], name="fk_erasure_commands_user_id_erasures"),
        sa.PrimaryKeyConstraint("user_id", "ticket_id", name="pk_erasure_commands"),
        sa.UniqueConstraint("command_id", name="uq_erasure_commands_command_id"),
    )
    op.create_index("ix_erasure_commands_unsent", "erasure_commands", ["user_id"],
                    postgresql_where=sa.text("sent_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_erasure_commands_unsent", table_name="erasure_commands")
    op.drop_table("erasure_commands")
    op.drop_table("erasures")
