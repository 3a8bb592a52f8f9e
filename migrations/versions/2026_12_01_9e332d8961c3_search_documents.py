"""full-text search documents of tickets (ticket.search), kept current by triggers

One row per ticket in ``ticket_search`` with two ``tsvector`` documents, each under a GIN index:

- ``public_doc``: title (weight A), description (B) and the public replies (C) — what a customer
  may search;
- ``staff_doc``: the same plus the internal notes (D) — what staff search.

A customer's search only ever reads ``public_doc``, so internal notes cannot change what it
matches, how it ranks or what it highlights. The documents live in their own table so that the
frequent ticket updates that change no text (status, assignment, version) never rewrite them or
their GIN entries.

Triggers keep the documents current inside the writing transaction, whoever writes: a new ticket
(statement trigger), a reply (statement trigger, appended), a changed title or description and a
changed reply body (redaction) rebuild the ticket's documents. The text configuration comes from
the connection setting ``tickets.search_config`` (the service sets it from
``TICKETS_SEARCH_TEXT_CONFIG``), ``english`` when unset. A document stops growing before the 1 MB
``tsvector`` limit (``tickets_search_append``); a rebuild reads at most 200,000 characters of
public and of internal replies. See docs/queries.md.

Revision ID: 9e332d8961c3
Revises: c4e8f2a61d07
Create Date: 2026-12-01 22:00:00
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TSVECTOR, UUID

revision: str = '9e332d8961c3'
down_revision: str | None = 'c4e8f2a61d07'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# tickets_search_append: doc || piece, unless that could pass the 1 MB limit of a tsvector; then the
# document stays as it is. The columns are STORAGE EXTERNAL (never compressed), so pg_column_size is
# the real size.
FUNCTIONS = r"""
CREATE FUNCTION tickets_search_config() RETURNS regconfig LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('tickets.search_config', true), ''), 'english')::regconfig
$$;

CREATE FUNCTION tickets_search_piece(body text, weight "char") RETURNS tsvector LANGUAGE sql STABLE AS $$
  SELECT setweight(to_tsvector(tickets_search_config(), coalesce(body, '')), weight)
$$;

CREATE FUNCTION tickets_search_append(doc tsvector, piece tsvector) RETURNS tsvector LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN piece IS NULL THEN doc
              WHEN pg_column_size(doc) + pg_column_size(piece) < 1000000 THEN doc || piece
              ELSE doc END
$$;

CREATE AGGREGATE tickets_search_agg(tsvector) (SFUNC = tickets_search_append, STYPE = tsvector, INITCOND = '');

CREATE FUNCTION tickets_search_rebuild(ids uuid[]) RETURNS void LANGUAGE sql AS $$
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

CREATE FUNCTION tickets_search_on_ticket_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO ticket_search (ticket_id, public_doc, staff_doc)
  SELECT n.id, d.doc, d.doc FROM new_tickets n
  CROSS JOIN LATERAL (
    SELECT tickets_search_piece(n.title, 'A') || tickets_search_piece(n.description, 'B') AS doc) d;
  RETURN NULL;
END $$;

CREATE FUNCTION tickets_search_on_ticket_text() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM tickets_search_rebuild(ARRAY[NEW.id]);
  RETURN NULL;
END $$;

CREATE FUNCTION tickets_search_on_reply_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE ticket_search s
  SET public_doc = tickets_search_append(s.public_doc, a.pub), staff_doc = tickets_search_append(s.staff_doc, a.staff)
  FROM (SELECT ticket_id,
               tickets_search_agg(tickets_search_piece(body, 'C') ORDER BY created_at, id)
                 FILTER (WHERE NOT internal) AS pub,
               tickets_search_agg(tickets_search_piece(body, (CASE WHEN internal THEN 'D' ELSE 'C' END)::"char")
                 ORDER BY created_at, id) AS staff
        FROM new_replies GROUP BY ticket_id) a
  WHERE s.ticket_id = a.ticket_id;
  RETURN NULL;
END $$;

CREATE FUNCTION tickets_search_on_reply_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM tickets_search_rebuild(ARRAY(
    SELECT DISTINCT n.ticket_id FROM new_replies n JOIN old_replies o ON o.id = n.id
    WHERE n.body IS DISTINCT FROM o.body OR n.internal IS DISTINCT FROM o.internal));
  RETURN NULL;
END $$;

CREATE TRIGGER tickets_search_insert AFTER INSERT ON tickets
  REFERENCING NEW TABLE AS new_tickets FOR EACH STATEMENT EXECUTE FUNCTION tickets_search_on_ticket_insert();
CREATE TRIGGER tickets_search_text AFTER UPDATE OF title, description ON tickets FOR EACH ROW
  WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.description IS DISTINCT FROM NEW.description)
  EXECUTE FUNCTION tickets_search_on_ticket_text();
CREATE TRIGGER replies_search_insert AFTER INSERT ON replies
  REFERENCING NEW TABLE AS new_replies FOR EACH STATEMENT EXECUTE FUNCTION tickets_search_on_reply_insert();
CREATE TRIGGER replies_search_update AFTER UPDATE ON replies
  REFERENCING OLD TABLE AS old_replies NEW TABLE AS new_replies FOR EACH STATEMENT
  EXECUTE FUNCTION tickets_search_on_reply_update();
"""

#: The documents of every ticket at once (tickets_search_rebuild's result, set-based: a million
#: tickets with three million replies take minutes, see bench/README.md).
BACKFILL = r"""
INSERT INTO ticket_search (ticket_id, public_doc, staff_doc)
SELECT t.id, head.doc || coalesce(pub.doc, ''), head.doc || coalesce(pub.doc, '') || coalesce(prv.doc, '')
FROM tickets t
CROSS JOIN LATERAL (
  SELECT tickets_search_piece(t.title, 'A') || tickets_search_piece(t.description, 'B') AS doc) head
LEFT JOIN (
  SELECT ticket_id, tickets_search_piece(left(string_agg(body, E'\n' ORDER BY created_at, id), 200000), 'C') AS doc
  FROM replies WHERE NOT internal GROUP BY ticket_id) pub ON pub.ticket_id = t.id
LEFT JOIN (
  SELECT ticket_id, tickets_search_piece(left(string_agg(body, E'\n' ORDER BY created_at, id), 200000), 'D') AS doc
  FROM replies WHERE internal GROUP BY ticket_id) prv ON prv.ticket_id = t.id
"""

DROP = """
DROP TRIGGER IF EXISTS replies_search_update ON replies;
DROP TRIGGER IF EXISTS replies_search_insert ON replies;
DROP TRIGGER IF EXISTS tickets_search_text ON tickets;
DROP TRIGGER IF EXISTS tickets_search_insert ON tickets;
DROP FUNCTION IF EXISTS tickets_search_on_reply_update();
DROP FUNCTION IF EXISTS tickets_search_on_reply_insert();
DROP FUNCTION IF EXISTS tickets_search_on_ticket_text();
DROP FUNCTION IF EXISTS tickets_search_on_ticket_insert();
DROP FUNCTION IF EXISTS tickets_search_rebuild(uuid[]);
DROP AGGREGATE IF EXISTS tickets_search_agg(tsvector);
DROP FUNCTION IF EXISTS tickets_search_append(tsvector, tsvector);
DROP FUNCTION IF EXISTS tickets_search_piece(text, "char");
DROP FUNCTION IF EXISTS tickets_search_config();
"""


def _statements(sql: str) -> list[str]:
    """One statement at a time (asyncpg prepares each): split before every top-level CREATE/DROP."""
    return [part.strip() for part in re.split(r";\n+(?=CREATE |DROP )", sql.strip().rstrip(";")) if part.strip()]


def upgrade() -> None:
    op.create_table(
        "ticket_search",
        sa.Column("ticket_id", UUID(as_uuid=True), sa.ForeignKey("tickets.id", name="fk_ticket_search_ticket_id_tickets"),
                  nullable=False),
        sa.Column("public_doc", TSVECTOR(), nullable=False),
        sa.Column("staff_doc", TSVECTOR(), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", name="pk_ticket_search"),
    )
    op.execute("ALTER TABLE ticket_search ALTER COLUMN public_doc SET STORAGE EXTERNAL, "
               "ALTER COLUMN staff_doc SET STORAGE EXTERNAL")
    # 10,000 most common lexemes per column instead of 1,000: the planner then sees that a word it
    # has no statistics for is rare (GIN, then sort the few matches) rather than guessing ~0.5 % of
    # all tickets and walking the newest ones for seconds (bench/README.md).
    op.execute("ALTER TABLE ticket_search ALTER COLUMN public_doc SET STATISTICS 1000, "
               "ALTER COLUMN staff_doc SET STATISTICS 1000")
    for statement in _statements(FUNCTIONS):
        op.execute(statement)
    # Existing tickets (none on a new database): one set-based pass, then the indexes.
    op.execute(BACKFILL)
    op.create_index("ix_ticket_search_public", "ticket_search", ["public_doc"], postgresql_using="gin")
    op.create_index("ix_ticket_search_staff", "ticket_search", ["staff_doc"], postgresql_using="gin")


def downgrade() -> None:
    for statement in _statements(DROP):
        op.execute(statement)
    op.drop_table("ticket_search")
