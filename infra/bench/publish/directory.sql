-- The directory's share of one publish, for pgbench on the directory's
-- database (DATABASE_URL); `make bench` supplies :ntopics and :first_topic.
-- gateway-ws reads these through its cache, but they count here, as the
-- directory would serve them.
\set topic (:client_id % :ntopics) + :first_topic
-- coordinator: the topic's owner and its recipients
SELECT owner_id FROM topics WHERE id = :topic;
SELECT user_id FROM subscriptions WHERE topic_id = :topic ORDER BY user_id;
-- notify-prepare checks the owner again
SELECT owner_id FROM topics WHERE id = :topic;
