"""attachments by reference, followers, outbound mail Message-IDs and the per-sender mail limit

- ``attachments``: metadata and URI of files attached to a description or a reply (issue 10);
- ``tickets.follower_ids``: the users following a ticket (in every event's routing snapshot);
- ``email_messages.from_address`` and ``outbound``: inbound mails remember their sender, so the
  tickets a sender's mails opened in the last hour are one index range; outbound rows are the
  Message-IDs of notifications the platform sent. Existing rows: no sender, inbound.

All additive: old code keeps working on the new schema during a rolling deploy.

Revision ID: 5b7e0c2d9a41
Revises: b7d1e5a0c3f2
Create Date: 2026-12-01 22:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '5b7e0c2d9a41'
down_revision: str | None = 'b7d1e5a0c3f2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_TICKETS = sa.text("reply_id IS NULL AND ticket_id IS NOT NULL AND NOT outbound")


def upgrade() -> None:
    op.create_table(
        'attachments',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('ticket_id', sa.UUID(), nullable=False),
        sa.Column('reply_id', sa.UUID(), nullable=True),
        sa.Column('filename', sa.Text(), nullable=False),
        sa.Column('content_type', sa.Text(), nullable=False),
        sa.Column('size_bytes', sa.BigInteger(), nullable=False),
        sa.Column('sha256', sa.Text(), nullable=False),
        sa.Column('uri', sa.Text(), nullable=False),
        sa.Column('internal', sa.Boolean(), nullable=False),
        sa.Column('scan_status', sa.Text(), nullable=False),
        sa.Column('scanner', sa.Text(), nullable=True),
        sa.Column('scanned_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_attachments_ticket_id_tickets')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_attachments')),
    )
    op.create_index('ix_attachments_ticket_reply', 'attachments', ['ticket_id', 'reply_id'])
    op.add_column('tickets', sa.Column('follower_ids', postgresql.ARRAY(sa.UUID()), nullable=False,
                                       server_default=sa.text("'{}'")))
    op.add_column('email_messages', sa.Column('from_address', sa.Text(), nullable=True))
    op.add_column('email_messages', sa.Column('outbound', sa.Boolean(), nullable=False,
                                              server_default=sa.text('false')))
    op.create_index('ix_email_messages_new_tickets', 'email_messages', ['from_address', 'created_at'],
                    postgresql_where=NEW_TICKETS)


def downgrade() -> None:
    op.drop_index('ix_email_messages_new_tickets', table_name='email_messages')
    op.drop_column('email_messages', 'outbound')
    op.drop_column('email_messages', 'from_address')
    op.drop_column('tickets', 'follower_ids')
    op.drop_index('ix_attachments_ticket_reply', table_name='attachments')
    op.drop_table('attachments')
