-- The SQL writes of one publish, as the coordinator and the four
-- participant calls run them, for pgbench (`make bench` supplies :ntopics
-- and :first_topic). Each BEGIN/END is one function's database transaction.
\set topic (:client_id % :ntopics) + :first_topic
SELECT nextval('bench_tx') AS tx \gset
-- coordinator: the topic's owner and its recipients
SELECT owner_id AS owner FROM topics WHERE id = :topic \gset
SELECT user_id FROM subscriptions WHERE topic_id = :topic ORDER BY user_id;
-- notify-prepare
SELECT owner_id FROM topics WHERE id = :topic;
BEGIN;
INSERT INTO tx_barriers (tx_id, participant, state) VALUES ('b' || :tx, 'persist', 'prepared') ON CONFLICT DO NOTHING;
SELECT state FROM tx_barriers WHERE tx_id = 'b' || :tx AND participant = 'persist' FOR UPDATE;
WITH n AS (INSERT INTO notifications (tx_id, topic_id, sender_id, title, body, email, state)
           VALUES ('b' || :tx, :topic, :owner, 'bench', 'payload', false, 'prepared') RETURNING id)
INSERT INTO deliveries (notification_id, user_id) SELECT n.id, s.user_id FROM n, subscriptions s WHERE s.topic_id = :topic;
END;
SELECT id FROM notifications WHERE tx_id = 'b' || :tx;
-- counter-prepare
BEGIN;
INSERT INTO tx_barriers (tx_id, participant, state) VALUES ('b' || :tx, 'counter', 'prepared') ON CONFLICT DO NOTHING;
SELECT state FROM tx_barriers WHERE tx_id = 'b' || :tx AND participant = 'counter' FOR UPDATE;
INSERT INTO pending_increments (tx_id, user_id) SELECT 'b' || :tx, user_id FROM subscriptions WHERE topic_id = :topic;
END;
-- counter-commit
BEGIN;
SELECT state FROM tx_barriers WHERE tx_id = 'b' || :tx AND participant = 'counter' FOR UPDATE;
WITH applied AS (DELETE FROM pending_increments WHERE tx_id = 'b' || :tx RETURNING user_id)
INSERT INTO counters (user_id, unread) SELECT user_id, 1 FROM applied
ON CONFLICT (user_id) DO UPDATE SET unread = counters.unread + 1 RETURNING user_id, unread;
UPDATE tx_barriers SET state = 'committed', updated_at = now() WHERE tx_id = 'b' || :tx AND participant = 'counter';
END;
-- notify-commit
BEGIN;
SELECT state FROM tx_barriers WHERE tx_id = 'b' || :tx AND participant = 'persist' FOR UPDATE;
UPDATE notifications SET state = 'committed' WHERE tx_id = 'b' || :tx;
UPDATE tx_barriers SET state = 'committed', updated_at = now() WHERE tx_id = 'b' || :tx AND participant = 'persist';
END;
SELECT id FROM notifications WHERE tx_id = 'b' || :tx;
