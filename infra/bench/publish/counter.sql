-- The counter participant's share of one publish (counter-prepare, then
-- counter-commit), for pgbench on its database (COUNTER_DATABASE_URL);
-- `make bench` supplies :recipients (the subscribers' ids,
-- comma-separated). Each BEGIN/END is one function's transaction, as the
-- barrier and lib/store run it.
SELECT nextval('bench_tx') AS tx \gset
-- counter-prepare
BEGIN;
INSERT INTO tx_barriers (tx_id, participant, state) VALUES ('b' || :tx, 'counter', 'prepared') ON CONFLICT DO NOTHING;
SELECT state FROM tx_barriers WHERE tx_id = 'b' || :tx AND participant = 'counter' FOR UPDATE;
INSERT INTO pending_increments (tx_id, user_id)
SELECT 'b' || :tx, u FROM unnest(ARRAY[:recipients]::bigint[]) AS u ON CONFLICT DO NOTHING;
END;
-- counter-commit
BEGIN;
SELECT state FROM tx_barriers WHERE tx_id = 'b' || :tx AND participant = 'counter' FOR UPDATE;
WITH applied AS (DELETE FROM pending_increments WHERE tx_id = 'b' || :tx RETURNING user_id)
INSERT INTO counters (user_id, unread) SELECT user_id, 1 FROM applied
ON CONFLICT (user_id) DO UPDATE SET unread = counters.unread + 1 RETURNING user_id, unread;
UPDATE tx_barriers SET state = 'committed', updated_at = now() WHERE tx_id = 'b' || :tx AND participant = 'counter';
END;
