-- +goose Up
-- The recipient set of a direct notification (POST /api/notifications)
-- is the users the operator named, on no topic.
ALTER TABLE recipient_sets ALTER COLUMN topic_id DROP NOT NULL;

-- +goose Down
DELETE FROM recipient_sets WHERE topic_id IS NULL;
ALTER TABLE recipient_sets ALTER COLUMN topic_id SET NOT NULL;
