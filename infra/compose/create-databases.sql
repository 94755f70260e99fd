-- The two-phase commit participants' own databases, beside the directory
-- (POSTGRES_DB, tidings) on the same server: the persist participant's
-- (notifications, deliveries, the ack outbox) and the counter
-- participant's (unread counters). The postgres image runs this once, when
-- it initialises an empty data directory (/docker-entrypoint-initdb.d);
-- docker-compose.yml and infra/faasd mount it there, and the migrations
-- then fill all three. On a data directory made before, create them by
-- hand (docs/deploy-compose.md, docs/deploy-faasd.md).
CREATE DATABASE tidings_persist;
CREATE DATABASE tidings_counter;
