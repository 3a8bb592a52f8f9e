"""initial schema

Revision ID: c2f51a414e1e
Revises:
Create Date: 2026-11-25 22:12:11.568845
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'c2f51a414e1e'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("ticket_number_seq", start=1)))
    op.create_table('email_messages',
    sa.Column('message_id', sa.Text(), nullable=False),
    sa.Column('ticket_id', sa.UUID(), nullable=True),
    sa.Column('reply_id', sa.UUID(), nullable=True),
    sa.Column('command_id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_email_messages'))
    )
    op.create_table('processed_commands',
    sa.Column('message_id', sa.UUID(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('command_type', sa.Text(), nullable=False),
    sa.Column('ticket_id', sa.UUID(), nullable=True),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('result', sa.Text(), nullable=False),
    sa.Column('reply_to', sa.Text(), nullable=True),
    sa.Column('result_published_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('message_id', name=op.f('pk_processed_commands')),
    sa.UniqueConstraint('seq', name=op.f('uq_processed_commands_seq'))
    )
    op.create_index('ix_processed_commands_unpublished', 'processed_commands', ['seq'], unique=False, postgresql_where=sa.text('result_published_at IS NULL'))
    op.create_table('ticket_events',
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=False),
    sa.Column('ticket_id', sa.UUID(), nullable=False),
    sa.Column('ticket_version', sa.Integer(), nullable=False),
    sa.Column('type', sa.Text(), nullable=False),
    sa.Column('internal', sa.Boolean(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_ticket_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_ticket_events_event_id')),
    sa.UniqueConstraint('ticket_id', 'ticket_version', name='uq_ticket_events_ticket_version')
    )
    op.create_index('ix_ticket_events_unpublished', 'ticket_events', ['seq'], unique=False, postgresql_where=sa.text('published_at IS NULL'))
    op.create_table('tickets',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('number', sa.Text(), nullable=False),
    sa.Column('customer_id', sa.UUID(), nullable=False),
    sa.Column('created_by', sa.UUID(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=True),
    sa.Column('priority', sa.Text(), nullable=False),
    sa.Column('priority_rank', sa.SmallInteger(), nullable=False),
    sa.Column('category_id', sa.UUID(), nullable=True),
    sa.Column('channel', sa.Text(), nullable=False),
    sa.Column('tags', postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('assignee_id', sa.UUID(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('first_response_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('follow_up_of', sa.UUID(), nullable=True),
    sa.Column('time_spent_minutes', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('email_message_id', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tickets')),
    sa.UniqueConstraint('number', name=op.f('uq_tickets_number'))
    )
    op.create_table('users',
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('email', sa.Text(), nullable=False),
    sa.Column('display_name', sa.Text(), server_default=sa.text("''"), nullable=False),
    sa.Column('role', sa.Text(), nullable=False),
    sa.Column('customer_id', sa.UUID(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_users'))
    )
    op.create_index('ix_users_email', 'users', ['email'], unique=False)
    op.create_table('replies',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('ticket_id', sa.UUID(), nullable=False),
    sa.Column('author_id', sa.UUID(), nullable=False),
    sa.Column('author_role', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('internal', sa.Boolean(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('email_message_id', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_replies_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_replies'))
    )
    op.create_index('ix_replies_ticket_thread', 'replies', ['ticket_id', 'created_at', 'id'], unique=False)
    op.create_table('time_entries',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('ticket_id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('minutes', sa.Integer(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_time_entries_ticket_id_tickets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_time_entries'))
    )
    op.create_index('ix_time_entries_ticket', 'time_entries', ['ticket_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_time_entries_ticket', table_name='time_entries')
    op.drop_table('time_entries')
    op.drop_index('ix_replies_ticket_thread', table_name='replies')
    op.drop_table('replies')
    op.drop_index('ix_users_email', table_name='users')
    op.drop_table('users')
    op.drop_table('tickets')
    op.drop_index('ix_ticket_events_unpublished', table_name='ticket_events', postgresql_where=sa.text('published_at IS NULL'))
    op.drop_table('ticket_events')
    op.drop_index('ix_processed_commands_unpublished', table_name='processed_commands', postgresql_where=sa.text('result_published_at IS NULL'))
    op.drop_table('processed_commands')
    op.drop_table('email_messages')
    op.execute(sa.schema.DropSequence(sa.Sequence("ticket_number_seq")))
