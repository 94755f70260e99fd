package store

import (
	"context"
	"math"

	"github.com/jackc/pgx/v5"

	"tidings/lib/notification"
)

// PrepareNotification stores d as the prepared notification of
// transaction txID, with one delivery per recipient of the transaction's
// recipient set, read from dir (the directory) in chunks and copied into
// tx; the set must hold want recipients (ErrRecipientSet otherwise). It
// returns the notification's id.
func PrepareNotification(ctx context.Context, tx Tx, dir Querier, txID string, d notification.Draft, want int) (int64, error) {
	id, err := insertNotification(ctx, tx, txID, d)
	if err != nil {
		return 0, err
	}
	err = copyRecipients(ctx, dir, tx, txID, want, "deliveries", []string{"notification_id", "user_id"},
		func(user int64) []any { return []any{id, user} })
	return id, err
}

// PrepareNotificationFor is PrepareNotification for the recipients given
// rather than a recipient set: for notifications made without a
// coordinator (tests, tools), a handful of recipients.
func PrepareNotificationFor(ctx context.Context, q Querier, txID string, d notification.Draft, recipients []int64) (int64, error) {
	id, err := insertNotification(ctx, q, txID, d)
	if err != nil {
		return 0, err
	}
	_, err = q.Exec(ctx, `
		INSERT INTO deliveries (notification_id, user_id)
		SELECT $1, u FROM unnest($2::bigint[]) AS u ON CONFLICT DO NOTHING`, id, recipients)
	return id, mapError(err)
}

// insertNotification stores d as the prepared notification of txID.
func insertNotification(ctx context.Context, q Querier, txID string, d notification.Draft) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `
		INSERT INTO notifications (tx_id, topic_id, sender_id, title, body, email, state)
		VALUES ($1, $2, $3, $4, $5, $6, 'prepared') RETURNING id`,
		txID, d.TopicID, d.SenderID, d.Title, d.Body, d.Email).Scan(&id)
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
//
// Any page costs about the first's: the user's deliveries are walked down
// deliveries_user_idx (user_id, notification_id DESC) from before, and
// each one's notification is looked up by its key to check that it is
// committed, until limit are found. The lateral subquery (OFFSET 0 keeps
// the planner from flattening it) holds that plan: joined plainly, the
// planner may merge-join with the notifications key scanned from the
// newest notification down to before, which is the whole history above
// the page (the last page of 100,000 took a second).
func ListNotifications(ctx context.Context, q Querier, userID int64, limit int, before int64) ([]notification.Notification, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	rows, err := q.Query(ctx, `
		SELECT n.id, n.topic_id, n.sender_id, n.title, n.body, n.created_at, d.acked_at
		FROM deliveries d CROSS JOIN LATERAL (
			SELECT * FROM notifications n WHERE n.id = d.notification_id AND n.state = 'committed' OFFSET 0) n
		WHERE d.user_id = $1 AND d.notification_id < $3
		ORDER BY d.notification_id DESC LIMIT $2`, userID, limit, before)
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

// Ack is an ack the persist participant recorded whose unread decrement
// the counter has not confirmed yet: a row of the ack outbox.
type Ack struct {
	ID             int64 `json:"id"`
	UserID         int64 `json:"user_id"`
	NotificationID int64 `json:"notification_id"`
}

// RecordAck marks a committed notification delivered to userID as read
// and, in the same transaction, puts the ack in the outbox for the counter
// (ApplyAcks). It returns the outbox row's id (a repeated ack finds the row
// of the first while that waits; 0 when the first was applied already)
// and the user's unread count as this database sees it: committed
// deliveries not acked. ErrNotFound when no such delivery.
func RecordAck(ctx context.Context, db Beginner, userID, notificationID int64) (ackID, unread int64, err error) {
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var acked bool
		err := tx.QueryRow(ctx, `
			SELECT d.acked_at IS NOT NULL FROM deliveries d JOIN notifications n ON n.id = d.notification_id
			WHERE d.notification_id = $1 AND d.user_id = $2 AND n.state = 'committed'
			FOR UPDATE OF d`, notificationID, userID).Scan(&acked)
		if err != nil {
			return err
		}
		if !acked {
			if _, err := tx.Exec(ctx, `UPDATE deliveries SET acked_at = now() WHERE notification_id = $1 AND user_id = $2`,
				notificationID, userID); err != nil {
				return err
			}
			err = tx.QueryRow(ctx, `INSERT INTO ack_outbox (user_id, notification_id) VALUES ($1, $2) RETURNING id`,
				userID, notificationID).Scan(&ackID)
		} else {
			err = tx.QueryRow(ctx, `SELECT coalesce((SELECT id FROM ack_outbox WHERE notification_id = $1 AND user_id = $2), 0)`,
				notificationID, userID).Scan(&ackID)
		}
		if err != nil {
			return err
		}
		unread, err = UnreadDeliveries(ctx, tx, userID)
		return err
	})
	return ackID, unread, mapError(err)
}

// UnreadDeliveries counts the committed notifications delivered to userID
// and not acked: what the counter holds for the user once every
// transaction and ack has been applied.
func UnreadDeliveries(ctx context.Context, q Querier, userID int64) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `
		SELECT count(*) FROM deliveries d JOIN notifications n ON n.id = d.notification_id
		WHERE d.user_id = $1 AND d.acked_at IS NULL AND n.state = 'committed'`, userID).Scan(&n)
	return n, mapError(err)
}

// PendingAcks returns up to limit acks of the outbox, oldest first.
func PendingAcks(ctx context.Context, q Querier, limit int) ([]Ack, error) {
	rows, err := q.Query(ctx, `SELECT id, user_id, notification_id FROM ack_outbox ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, mapError(err)
	}
	acks, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Ack])
	return acks, mapError(err)
}

// ForgetAcks removes acks the counter has applied from the outbox.
func ForgetAcks(ctx context.Context, q Querier, ids []int64) error {
	_, err := q.Exec(ctx, `DELETE FROM ack_outbox WHERE id = ANY($1)`, ids)
	return mapError(err)
}
