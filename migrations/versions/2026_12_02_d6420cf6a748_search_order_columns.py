"""search: created_at, customer_id and deleted_at copied into ticket_search (newest-first walks on it)

``ticket.search`` lists the newest match first, by (created_at, id). With those on ``tickets`` only,
every search joined ``tickets`` for each candidate: a phrase walked ``ix_tickets_created`` and fetched
the document of every ticket passed (thousands of random reads to find 20 matches at 0.5 %), an
uncommon word read all of its ~300 tickets to sort them. Now ``ticket_search`` carries copies of
the ticket's ``created_at``, ``customer_id`` and ``deleted_at``, with two b-tree indexes:

- ``ix_ticket_search_created (created_at, ticket_id)``: an agent's newest-first walk stays on this
  one table (document recheck included); GIN matches are sorted here too;
- ``ix_ticket_search_customer_created (customer_id, created_at, ticket_id)``: a customer's walk.

``tickets`` is read for the page's rows only (unless the search has filters kept on ``tickets``:
status, priority, assignee, category, title). The copies are set by the insert trigger and by
``tickets_search_rebuild``, and kept equal by a row trigger on the rare updates that change one of
them (a deletion or restore; ``created_at`` and ``customer_id`` never change in the service, the
trigger covers any other writer). See docs/queries.md.

Upgrade on existing data: the GIN indexes are dropped, every row updated from ``tickets``, then all
indexes built and the table analyzed — one transaction holding ACCESS EXCLUSIVE on ``ticket_search``
(searches and every ticket or reply write wait): measured in bench/README.md. The update leaves a
dead version of every row for (auto)vacuum.

Revision ID: d6420cf6a748
Revises: 2afae516f6cd
Create Date: 2026-12-02 01:30:00
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from alembic import op

revision: str = 'd6420cf6a748'
down_revision: str | None = '2afae516f6cd'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The two functions that create document rows, now filling the copies too, and the trigger that keeps
#: the copies equal to the ticket's columns.
FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION tickets_search_rebuild(ids uuid[]) RETURNS void LANGUAGE sql AS $$
  INSERT INTO ticket_search (ticket_id, created_at, customer_id, deleted_at, public_doc, staff_doc)
  SELECT t.id, t.created_at, t.customer_id, t.deleted_at, head.doc || pub.doc, head.doc || pub.doc || prv.doc
  FROM tickets t
  CROSS JOIN LATERAL (
    SELECT tickets_search_piece(t.title, 'A') || tickets_search_piece(t.description, 'B') AS doc) head
  CROSS JOIN LATERAL (
    SELECT tickets_search_piece(left(string_agg(r.body, E'\n' ORDER BY r.created_at, r.id), 200000), 'C') AS doc
    FROM replies r WHERE r.ticket_id = t.id AND NOT r.internal) pub
  CROSS JOIN LATERAL (
    SELECT tickets_search_piece(left(string_agg(r.body, E'\n' ORDER BY r.created_at, r.id), 200000), 'D') AS doc
    FROM replies r WHERE r.ticket_id = t.id AND r.internal) prv
  WHERE t.id = ANY(ids)
  ON CONFLICT (ticket_id) DO UPDATE SET public_doc = EXCLUDED.public_doc, staff_doc = EXCLUDED.staff_doc,
    created_at = EXCLUDED.created_at, customer_id = EXCLUDED.customer_id, deleted_at = EXCLUDED.deleted_at
$$;

CREATE OR REPLACE FUNCTION tickets_search_on_ticket_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ticket_search (ticket_id, created_at, customer_id, deleted_at, public_doc, staff_doc)
  SELECT n.id, n.created_at, n.customer_id, n.deleted_at, d.doc, d.doc FROM new_tickets n
  CROSS JOIN LATERAL (
    SELECT tickets_search_piece(n.title, 'A') || tickets_search_piece(n.description, 'B') AS doc) d;
  RETURN NULL;
END $$;

CREATE FUNCTION tickets_search_on_ticket_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ticket_search SET created_at = NEW.created_at, customer_id = NEW.customer_id, deleted_at = NEW.deleted_at
  WHERE ticket_id = NEW.id;
  RETURN NULL;
END $$;

CREATE TRIGGER tickets_search_keys AFTER UPDATE OF created_at, customer_id, deleted_at ON tickets FOR EACH ROW
  WHEN (OLD.created_at IS DISTINCT FROM NEW.created_at OR OLD.customer_id IS DISTINCT FROM NEW.customer_id
        OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at)
  EXECUTE FUNCTION tickets_search_on_ticket_keys();
"""

#: Revision 9e332d8961c3's definitions, restored on downgrade.
PREVIOUS_FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION tickets_search_rebuild(ids uuid[]) RETURNS void LANGUAGE sql AS $$
  INSERT INTO ticket_search (ticket_id, public_doc, staff_doc)
  SELECT t.id, head.doc || pub.doc, head.doc || pub.doc || prv.doc
  FROM tickets t
  CROSS JOIN LATERAL (
    SELECT tickets_search_piece(t.title, 'A') || tickets_search_piece(t.description, 'B') AS doc) head
  CROSS JOIN LATERAL (
    SELECT tickets_search_piece(left(string_agg(r.body, E'\n' ORDER BY r.created_at, r.id), 200000), 'C') AS doc
    FROM replies r WHERE r.ticket_id = t.id AND NOT r.internal) pub
  CROSS JOIN LATERAL (
    SELECT tickets_search_piece(left(string_agg(r.body, E'\n' ORDER BY r.created_at, r.id), 200000), 'D') AS doc
    FROM replies r WHERE r.ticket_id = t.id AND r.internal) prv
  WHERE t.id = ANY(ids)
  ON CONFLICT (ticket_id) DO UPDATE SET public_doc = EXCLUDED.public_doc, staff_doc = EXCLUDED.staff_doc
$$;

CREATE OR REPLACE FUNCTION tickets_search_on_ticket_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ticket_search (ticket_id, public_doc, staff_doc)
  SELECT n.id, d.doc, d.doc FROM new_tickets n
  CROSS JOIN LATERAL (
    SELECT tickets_search_piece(n.title, 'A') || tickets_search_piece(n.description, 'B') AS doc) d;
  RETURN NULL;
END $$;
"""


def _statements(sql: str) -> list[str]:
    """One statement at a time (asyncpg prepares each): split before every top-level CREATE/DROP."""
    return [part.strip() for part in re.split(r";\n+(?=CREATE |DROP )", sql.strip().rstrip(";")) if part.strip()]


def upgrade() -> None:
    op.execute("LOCK TABLE ticket_search IN ACCESS EXCLUSIVE MODE")
    op.execute("ALTER TABLE ticket_search ADD COLUMN created_at timestamptz, ADD COLUMN customer_id uuid, "
               "ADD COLUMN deleted_at timestamptz")
    for statement in _statements(FUNCTIONS):
        op.execute(statement)
    # Every row gets a new version: without the GIN indexes it does not re-insert every document into them.
    op.drop_index("ix_ticket_search_staff", table_name="ticket_search")
    op.drop_index("ix_ticket_search_public", table_name="ticket_search")
    op.execute("UPDATE ticket_search s SET created_at = t.created_at, customer_id = t.customer_id, "
               "deleted_at = t.deleted_at FROM tickets t WHERE t.id = s.ticket_id")
    op.execute("ALTER TABLE ticket_search ALTER COLUMN created_at SET NOT NULL, ALTER COLUMN customer_id SET NOT NULL")
    op.create_index("ix_ticket_search_public", "ticket_search", ["public_doc"], postgresql_using="gin")
    op.create_index("ix_ticket_search_staff", "ticket_search", ["staff_doc"], postgresql_using="gin")
    op.create_index("ix_ticket_search_created", "ticket_search", ["created_at", "ticket_id"])
    op.create_index("ix_ticket_search_customer_created", "ticket_search", ["customer_id", "created_at", "ticket_id"])
    # Statistics of the new columns now: without them the planner guesses 0.5 % of all rows for one
    # customer's and walks instead of sorting their few matches.
    op.execute("ANALYZE ticket_search")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS tickets_search_keys ON tickets")
    op.execute("DROP FUNCTION IF EXISTS tickets_search_on_ticket_keys()")
    for statement in _statements(PREVIOUS_FUNCTIONS):
        op.execute(statement)
    op.drop_index("ix_ticket_search_customer_created", table_name="ticket_search")
    op.drop_index("ix_ticket_search_created", table_name="ticket_search")
    op.execute("ALTER TABLE ticket_search DROP COLUMN deleted_at, DROP COLUMN customer_id, DROP COLUMN created_at")
