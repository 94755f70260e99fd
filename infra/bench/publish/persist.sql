-- The persist participant's share of one publish (notify-prepare, then
-- notify-commit), for pgbench on its database (PERSIST_DATABASE_URL);
-- `make bench` supplies :ntopics, :first_topic, :first_owner and
-- :recipients (the subscribers' ids, comma-separated: every bench topic has
-- the same). Each BEGIN/END is one function's transaction, as the barrier
-- and lib/store run it.
\set topic (:client_id % :ntopics) + :first_topic
\set sender (:client_id % :ntopics) + :first_owner
SELECT nextval('bench_tx') AS tx \gset
-- notify-prepare
BEGIN;
INSERT INTO tx_barriers (tx_id, participant, state) VALUES ('b' || :tx, 'persist', 'prepared') ON CONFLICT DO NOTHING;
SELECT state FROM tx_barriers WHERE tx_id = 'b' || :tx AND participant = 'persist' FOR UPDATE;
INSERT INTO notifications (tx_id, topic_id, sender_id, title, body, email, state)
VALUES ('b' || :tx, :topic, :sender, 'bench', 'payload', false, 'prepared') RETURNING id AS notification \gset
INSERT INTO deliveries (notification_id, user_id)
SELECT :notification, u FROM unnest(ARRAY[:recipients]::bigint[]) AS u ON CONFLICT DO NOTHING;
END;
SELECT id FROM notifications WHERE tx_id = 'b' || :tx;
-- notify-commit
BEGIN;
SELECT state FROM tx_barriers WHERE tx_id = 'b' || :tx AND participant = 'persist' FOR UPDATE;
UPDATE notifications SET state = 'committed' WHERE tx_id = 'b' || :tx;
UPDATE tx_barriers SET state = 'committed', updated_at = now() WHERE tx_id = 'b' || :tx AND participant = 'persist';
END;
SELECT id FROM notifications WHERE tx_id = 'b' || :tx;
