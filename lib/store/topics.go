package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Topic is something users publish notifications on.
type Topic struct {
	ID          int64     `json:"id"`
	OwnerID     int64     `json:"owner_id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
}

// TopicView is a topic as one user sees it in a listing.
type TopicView struct {
	Topic
	Subscribers int64 `json:"subscribers"`
	Subscribed  bool  `json:"subscribed"`
}

// CreateTopic inserts a topic owned by ownerID; ErrConflict when the owner
// already has a topic of that name.
func CreateTopic(ctx context.Context, q Querier, ownerID int64, name, description string) (Topic, error) {
	var t Topic
	err := q.QueryRow(ctx,
		`INSERT INTO topics (owner_id, name, description) VALUES ($1, $2, $3)
		 RETURNING id, owner_id, name, description, created_at`,
		ownerID, name, description).Scan(&t.ID, &t.OwnerID, &t.Name, &t.Description, &t.CreatedAt)
	return t, mapError(err)
}

// TopicOwner returns the owner of a topic; ErrNotFound when there is none.
func TopicOwner(ctx context.Context, q Querier, topicID int64) (int64, error) {
	var owner int64
	err := q.QueryRow(ctx, `SELECT owner_id FROM topics WHERE id = $1`, topicID).Scan(&owner)
	return owner, mapError(err)
}

// ListTopics returns every topic, oldest first, as viewer sees it.
func ListTopics(ctx context.Context, q Querier, viewer int64) ([]TopicView, error) {
	rows, err := q.Query(ctx, `
		SELECT t.id, t.owner_id, t.name, t.description, t.created_at,
		       (SELECT count(*) FROM subscriptions s WHERE s.topic_id = t.id),
		       EXISTS (SELECT 1 FROM subscriptions s WHERE s.topic_id = t.id AND s.user_id = $1)
		FROM topics t ORDER BY t.id`, viewer)
	if err != nil {
		return nil, mapError(err)
	}
	topics, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (TopicView, error) {
		var v TopicView
		err := row.Scan(&v.ID, &v.OwnerID, &v.Name, &v.Description, &v.CreatedAt, &v.Subscribers, &v.Subscribed)
		return v, err
	})
	return topics, mapError(err)
}

// Subscribe makes userID a subscriber of topicID, or updates the email
// preference of an existing subscription; ErrNotFound when the topic is missing.
func Subscribe(ctx context.Context, q Querier, topicID, userID int64, email bool) error {
	tag, err := q.Exec(ctx, `
		INSERT INTO subscriptions (topic_id, user_id, email)
		SELECT id, $2, $3 FROM topics WHERE id = $1
		ON CONFLICT (topic_id, user_id) DO UPDATE SET email = EXCLUDED.email`,
		topicID, userID, email)
	if err != nil {
		return mapError(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Unsubscribe removes a subscription; it is not an error when there was
// none, but ErrNotFound when the topic itself is missing.
func Unsubscribe(ctx context.Context, q Querier, topicID, userID int64) error {
	var exists bool
	err := q.QueryRow(ctx, `
		WITH gone AS (DELETE FROM subscriptions WHERE topic_id = $1 AND user_id = $2)
		SELECT EXISTS (SELECT 1 FROM topics WHERE id = $1)`, topicID, userID).Scan(&exists)
	if err != nil {
		return mapError(err)
	}
	if !exists {
		return ErrNotFound
	}
	return nil
}

// IsSubscriber reports whether userID subscribes to topicID.
func IsSubscriber(ctx context.Context, q Querier, topicID, userID int64) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM subscriptions WHERE topic_id = $1 AND user_id = $2)`,
		topicID, userID).Scan(&ok)
	return ok, mapError(err)
}

// Subscribers returns the ids of a topic's subscribers.
func Subscribers(ctx context.Context, q Querier, topicID int64) ([]int64, error) {
	rows, err := q.Query(ctx, `SELECT user_id FROM subscriptions WHERE topic_id = $1 ORDER BY user_id`, topicID)
	if err != nil {
		return nil, mapError(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	return ids, mapError(err)
}

// MailRecipient is a recipient who asked for a topic's notifications by mail.
type MailRecipient struct {
	UserID int64
	Email  string
}

// MailRecipients returns the name of the topic of transaction txID and
// those of its recipients (its recipient set) who subscribe to the topic
// with email on; for a direct notification (a set on no topic), "" and
// every recipient. q is the directory.
func MailRecipients(ctx context.Context, q Querier, txID string) (string, []MailRecipient, error) {
	var name string
	err := q.QueryRow(ctx, `SELECT coalesce(t.name, '') FROM recipient_sets r LEFT JOIN topics t ON t.id = r.topic_id
		WHERE r.tx_id = $1 AND (r.topic_id IS NULL OR t.id IS NOT NULL)`, txID).Scan(&name)
	if err != nil {
		return "", nil, mapError(err)
	}
	rows, err := q.Query(ctx, `
		SELECT u.id, u.email FROM recipient_sets r CROSS JOIN LATERAL unnest(r.recipients) AS x(id)
		JOIN users u ON u.id = x.id
		WHERE r.tx_id = $1 AND (r.topic_id IS NULL OR EXISTS (
			SELECT 1 FROM subscriptions s WHERE s.topic_id = r.topic_id AND s.user_id = x.id AND s.email))
		ORDER BY u.id`, txID)
	if err != nil {
		return "", nil, mapError(err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (MailRecipient, error) {
		var m MailRecipient
		return m, row.Scan(&m.UserID, &m.Email)
	})
	return name, list, mapError(err)
}
