-- +goose Up
-- Direct notifications (POST /api/notifications) are sent by the operator
-- to the users it names: on no topic and from no user, so both are NULL
-- (null in the events and the history).
ALTER TABLE notifications ALTER COLUMN topic_id DROP NOT NULL;
ALTER TABLE notifications ALTER COLUMN sender_id DROP NOT NULL;

-- +goose Down
-- Fails while a direct notification is stored: they have no topic to keep.
ALTER TABLE notifications ALTER COLUMN sender_id SET NOT NULL;
ALTER TABLE notifications ALTER COLUMN topic_id SET NOT NULL;
