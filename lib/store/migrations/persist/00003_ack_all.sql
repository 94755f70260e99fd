-- +goose NO TRANSACTION
-- +goose Up
-- ack-all: one outbox row stands for every delivery one ack-all marked
-- read (deliveries), so the relay carries one row and the counter lowers
-- the count by that many at once, whatever the user's backlog. A row of
-- ack-notification stands for one.
ALTER TABLE ack_outbox ADD COLUMN IF NOT EXISTS deliveries bigint NOT NULL DEFAULT 1 CHECK (deliveries > 0);

-- The unacked deliveries of a user, newest first: what
-- list-notifications?unread=true pages through and ack-all marks read,
-- without walking the acked ones. Built without blocking publishes (no
-- transaction, CONCURRENTLY); a run that failed midway leaves an INVALID
-- index to drop before the next.
CREATE INDEX CONCURRENTLY IF NOT EXISTS deliveries_unread_idx ON deliveries (user_id, notification_id DESC) WHERE acked_at IS NULL;

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS deliveries_unread_idx;
ALTER TABLE ack_outbox DROP COLUMN IF EXISTS deliveries;
