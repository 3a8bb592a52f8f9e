"""outbox: the relay stores its progress as bounds (relay_progress) instead of marking each row

The relay marked every published row (``UPDATE … SET published_at = now()``, and
``result_published_at`` on the inbox): ~40 µs of PostgreSQL CPU per command, a new version of a
wide row that is never HOT (the partial "unpublished" indexes name the column), an entry in each of
their indexes — and every insert wrote the partial index too. Now one row per outbox table in
``relay_progress`` says what is published: every ``seq`` ≤ ``max_seen`` except the ``holes``
(service/adapters/relay.py, ``OutboxProgress``). The leader updates both rows once per round; the
read is ``seq = ANY(holes)`` and ``seq > max_seen`` on the ``seq`` indexes, so the partial indexes
go. ``published_at``/``result_published_at`` stay, historical: set for the rows published before
this revision, no longer written.

Upgrade: both outbox tables are locked (ACCESS EXCLUSIVE, as dropping their indexes needs anyway)
so that no transaction holding an unseen ``seq`` is running; then, exactly from the data,
``max_seen`` = the highest ``seq`` and ``holes`` = the seqs not yet published (through the partial
indexes, before they are dropped: as many rows as the backlog). Instant apart from the wait for the
lock. Stop every older instance before (or as) the new ones start: an older relay that leads after
a new one would publish again every row published since (at least once still, but all of them),
since it knows only ``published_at``.

Downgrade: the rows published according to ``relay_progress`` get ``published_at`` /
``result_published_at`` = now() (one pass over each table: rows published since the upgrade), the
partial indexes are built again and ``relay_progress`` dropped.

Revision ID: 3f8a2d61c0b7
Revises: e1b7c3a9f502
Create Date: 2026-12-02 17:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '3f8a2d61c0b7'
down_revision: str | None = 'e1b7c3a9f502'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: outbox table → (its "published" column, its partial index)
OUTBOXES = {"ticket_events": ("published_at", "ix_ticket_events_unpublished"),
            "processed_commands": ("result_published_at", "ix_processed_commands_unpublished")}


def upgrade() -> None:
    op.create_table(
        'relay_progress',
        sa.Column('outbox', sa.Text(), nullable=False),
        sa.Column('max_seen', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
        sa.Column('holes', postgresql.ARRAY(sa.BigInteger()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('outbox', name=op.f('pk_relay_progress')),
    )
    # No writer of either table may be running while the progress is computed: one that had taken a
    # seq below max(seq) and commits later would be neither below max_seen nor a hole.
    op.execute("LOCK TABLE ticket_events, processed_commands IN ACCESS EXCLUSIVE MODE")
    for table, (published, index) in OUTBOXES.items():
        op.execute(f"""INSERT INTO relay_progress (outbox, max_seen, holes)
            SELECT '{table}', COALESCE((SELECT max(seq) FROM {table}), 0),
                   ARRAY(SELECT seq FROM {table} WHERE {published} IS NULL ORDER BY seq)""")
        op.drop_index(index, table_name=table, postgresql_where=sa.text(f'{published} IS NULL'))


def downgrade() -> None:
    op.execute("LOCK TABLE ticket_events, processed_commands IN ACCESS EXCLUSIVE MODE")
    for table, (published, index) in OUTBOXES.items():
        op.execute(f"""UPDATE {table} SET {published} = now() FROM relay_progress AS p
            WHERE p.outbox = '{table}' AND {published} IS NULL
              AND seq <= p.max_seen AND NOT seq = ANY(p.holes)""")
        op.create_index(index, table, ['seq'], unique=False, postgresql_where=sa.text(f'{published} IS NULL'))
    op.drop_table('relay_progress')
