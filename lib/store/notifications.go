package store

import (
	"context"

	"github.com/jackc/pgx/v5"

	"tidings/lib/notification"
)

// PrepareNotification stores d as the prepared notification of
// transaction txID, with its deliveries, and returns its id.
func PrepareNotification(ctx context.Context, q Querier, txID string, d notification.Draft) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `
		INSERT INTO notifications (tx_id, topic_id, sender_id, title, body, email, state)
		VALUES ($1, $2, $3, $4, $5, $6, 'prepared') RETURNING id`,
		txID, d.TopicID, d.SenderID, d.Title, d.Body, d.Email).Scan(&id)
	if err != nil {
		return 0, mapError(err)
	}
	_, err = q.Exec(ctx, `
		INSERT INTO deliveries (notification_id, user_id)
		SELECT $1, u FROM unnest($2::bigint[]) AS u ON CONFLICT DO NOTHING`, id, d.Recipients)
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
func ListNotifications(ctx context.Context, q Querier, userID int64, limit int, before int64) ([]notification.Notification, error) {
	rows, err := q.Query(ctx, `
		SELECT n.id, n.topic_id, n.sender_id, n.title, n.body, n.created_at, d.acked_at
		FROM deliveries d JOIN notifications n ON n.id = d.notification_id
		WHERE d.user_id = $1 AND n.state = 'committed' AND ($3 = 0 OR n.id < $3)
		ORDER BY n.id DESC LIMIT $2`, userID, limit, before)
	if err != nil {
		return nil, mapError(err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (notification.Notification, error) {
		var n notification.Notification
		err := row.Scan(&n.ID, &n.TopicID, &n.SenderID, &n.Title, &n.Body, &n.CreatedAt, &n.AckedAt)
		return n, err
	})
	return list, mapError(err)
}
