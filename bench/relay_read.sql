-- What the relay's read costs when the history holds many marked rows that no vacuum has passed yet
-- (bench/README.md, "The relay's read and the rows marked since the last vacuum"). The relay no
-- longer marks rows (migration 3f8a2d61c0b7 dropped the partial indexes this measures): run it on an
-- empty database migrated to e1b7c3a9f502 (`alembic upgrade e1b7c3a9f502`), the schema it was
-- written for:
--
--   psql -q -h 127.0.0.1 -U postgres -d <database> -f bench/relay_read.sql
--
-- A million history rows, all marked published but the last 500, no vacuum in between (autovacuum
-- runs at 20 % of a table's rows by default: on a table of ten million rows, two million marks).
-- Then the relay's read of the unpublished events, from the start of the partial index and from a
-- bound (ScanBounds in service/adapters/relay.py), each twice: the first read from the start also
-- marks the index entries it finds dead, so the second shows the steady cost per relay round.
SET synchronous_commit = off;
INSERT INTO ticket_events (event_id, ticket_id, ticket_version, type, internal, occurred_at, body)
SELECT gen_random_uuid(), gen_random_uuid(), 1, 'ticket.created', false, now(), repeat('x', 300)
FROM generate_series(1, 1000000);
UPDATE ticket_events SET published_at = now() WHERE seq <= (SELECT max(seq) - 500 FROM ticket_events);
\timing on
\echo from the start of the index:
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT seq FROM ticket_events WHERE published_at IS NULL ORDER BY seq LIMIT 500;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT seq FROM ticket_events WHERE published_at IS NULL ORDER BY seq LIMIT 500;
\echo from a bound:
SELECT max(seq) - 500 AS lo FROM ticket_events \gset
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT seq FROM ticket_events WHERE published_at IS NULL AND seq >= :lo ORDER BY seq LIMIT 500;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT seq FROM ticket_events WHERE published_at IS NULL AND seq >= :lo ORDER BY seq LIMIT 500;
