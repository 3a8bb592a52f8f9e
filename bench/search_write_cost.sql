-- What a reply costs the search documents: µs per inserted reply, the GIN pending-list merge of its
-- entries included (bench/README.md, "Write cost of the search documents"). On a seeded benchmark
-- database, in a transaction that is rolled back, optionally after a variant's statements:
--
--   (echo "BEGIN;"; echo "ALTER TABLE replies DISABLE TRIGGER replies_search_insert;"; \
--    cat bench/search_write_cost.sql; echo "ROLLBACK;") | psql -q -h 127.0.0.1 -U postgres -d tickets_bench_queries
--
-- 6,000 single-row INSERTs (as commands do), three into each of 2,000 random tickets, every third an
-- internal note. The pending lists get room for all of it and are merged at the end, inside the timing.
CREATE TEMP TABLE IF NOT EXISTS sample_ids AS SELECT id FROM tickets TABLESAMPLE SYSTEM (1) REPEATABLE (7) LIMIT 2000;
ALTER INDEX ix_ticket_search_staff SET (gin_pending_list_limit = 262144);
ALTER INDEX ix_ticket_search_public SET (gin_pending_list_limit = 262144);
SELECT gin_clean_pending_list('ix_ticket_search_staff') + gin_clean_pending_list('ix_ticket_search_public') AS pages_before;
DO $$
DECLARE t0 timestamptz; t1 timestamptz; n int := 0; r record; cleaned bigint;
BEGIN
  t0 := clock_timestamp();
  FOR r IN SELECT id FROM sample_ids, generate_series(1, 3) LOOP
    INSERT INTO replies (id, ticket_id, author_id, author_role, body, internal, source, created_at)
    VALUES (gen_random_uuid(), r.id, gen_random_uuid(), 'agent',
            'Please restart the printer, part' || n || ' and check the router cable. See ref'
              || substr(md5(n::text), 1, 7) || ' for the sync driver.',
            n % 3 = 2, 'web', now());
    n := n + 1;
  END LOOP;
  t1 := clock_timestamp();
  cleaned := gin_clean_pending_list('ix_ticket_search_staff') + gin_clean_pending_list('ix_ticket_search_public');
  RAISE NOTICE 'us_per_reply % (inserts % + pending-list merge %)',
    round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / n, 1), round(extract(epoch FROM t1 - t0) * 1e6 / n, 1),
    round(extract(epoch FROM clock_timestamp() - t1) * 1e6 / n, 1);
END $$;
