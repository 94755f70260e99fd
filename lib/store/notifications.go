package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Notification is a committed notification as its recipient sees it.
type Notification struct {
	ID        int64      `json:"id"`
	TopicID   int64      `json:"topic_id"`
	SenderID  int64      `json:"sender_id"`
	Title     string     `json:"title"`
	Body      string     `json:"body"`
	CreatedAt time.Time  `json:"created_at"`
	AckedAt   *time.Time `json:"acked_at"`
}

// NewNotification is what the persist participant prepares.
type NewNotification struct {
	TxID       string
	TopicID    int64
	SenderID   int64
	Title      string
	Body       string
	Email      bool
	Recipients []int64
}

// PrepareNotification stores n as prepared, with its deliveries, and
// returns its id.
func PrepareNotification(ctx context.Context, q Querier, n NewNotification) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `
		INSERT INTO notifications (tx_id, topic_id, sender_id, title, body, email, state)
		VALUES ($1, $2, $3, $4, $5, $6, 'prepared') RETURNING id`,
		n.TxID, n.TopicID, n.SenderID, n.Title, n.Body, n.Email).Scan(&id)
	if err != nil {
		return 0, mapError(err)
	}
	_, err = q.Exec(ctx, `
		INSERT INTO deliveries (notification_id, user_id)
		SELECT $1, u FROM unnest($2::bigint[]) AS u ON CONFLICT DO NOTHING`, id, n.Recipients)
	return id, mapError(err)
}

// NotificationByTx returns the id of the notification of a transaction.
func NotificationByTx(ctx context.Context, q Querier, txID string) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `SELECT id FROM notifications WHERE tx_id = $1`, txID).Scan(&id)
	return id, mapError(err)
}

// CommitNotification makes a prepared notification visible.
func CommitNotification(ctx context.Context, q Querier, txID string) error {
	_, err := q.Exec(ctx, `UPDATE notifications SET state = 'committed' WHERE tx_id = $1`, txID)
	return mapError(err)
}

// DropNotification removes a prepared notification and its deliveries.
func DropNotification(ctx context.Context, q Querier, txID string) error {
	_, err := q.Exec(ctx, `DELETE FROM notifications WHERE tx_id = $1 AND state = 'prepared'`, txID)
	return mapError(err)
}

// ListNotifications returns up to limit committed notifications delivered
// to userID, newest first, older than before when before > 0.
func ListNotifications(ctx context.Context, q Querier, userID int64, limit int, before int64) ([]Notification, error) {
	rows, err := q.Query(ctx, `
		SELECT n.id, n.topic_id, n.sender_id, n.title, n.body, n.created_at, d.acked_at
		FROM deliveries d JOIN notifications n ON n.id = d.notification_id
		WHERE d.user_id = $1 AND n.state = 'committed' AND ($3 = 0 OR n.id < $3)
		ORDER BY n.id DESC LIMIT $2`, userID, limit, before)
	if err != nil {
		return nil, mapError(err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Notification, error) {
		var n Notification
		err := row.Scan(&n.ID, &n.TopicID, &n.SenderID, &n.Title, &n.Body, &n.CreatedAt, &n.AckedAt)
		return n, err
	})
	return list, mapError(err)
}
