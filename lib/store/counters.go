package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// HoldIncrements records one pending unread increment per recipient of a
// transaction; they count only once applied.
func HoldIncrements(ctx context.Context, q Querier, txID string, recipients []int64) error {
	_, err := q.Exec(ctx, `
		INSERT INTO pending_increments (tx_id, user_id)
		SELECT $1, u FROM unnest($2::bigint[]) AS u ON CONFLICT DO NOTHING`, txID, recipients)
	return mapError(err)
}

// ApplyIncrements adds a transaction's pending increments to the counters,
// removes them, and returns each recipient's new unread count.
func ApplyIncrements(ctx context.Context, q Querier, txID string) (map[int64]int64, error) {
	rows, err := q.Query(ctx, `
		WITH applied AS (DELETE FROM pending_increments WHERE tx_id = $1 RETURNING user_id)
		INSERT INTO counters (user_id, unread) SELECT user_id, 1 FROM applied
		ON CONFLICT (user_id) DO UPDATE SET unread = counters.unread + 1
		RETURNING user_id, unread`, txID)
	if err != nil {
		return nil, mapError(err)
	}
	unread := map[int64]int64{}
	var user, n int64
	_, err = pgx.ForEachRow(rows, []any{&user, &n}, func() error {
		unread[user] = n
		return nil
	})
	return unread, mapError(err)
}

// DropIncrements removes a transaction's pending increments.
func DropIncrements(ctx context.Context, q Querier, txID string) error {
	_, err := q.Exec(ctx, `DELETE FROM pending_increments WHERE tx_id = $1`, txID)
	return mapError(err)
}

// Unread returns a user's unread count.
func Unread(ctx context.Context, q Querier, userID int64) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT coalesce((SELECT unread FROM counters WHERE user_id = $1), 0)`, userID).Scan(&n)
	return n, mapError(err)
}

// Ack marks a committed notification delivered to userID as read and
// lowers the user's unread count, once. ErrNotFound when no such delivery.
func Ack(ctx context.Context, db interface {
	Begin(context.Context) (pgx.Tx, error)
}, userID, notificationID int64) (int64, error) {
	var unread int64
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
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
			if _, err := tx.Exec(ctx, `UPDATE counters SET unread = unread - 1 WHERE user_id = $1 AND unread > 0`, userID); err != nil {
				return err
			}
		}
		return tx.QueryRow(ctx, `SELECT coalesce((SELECT unread FROM counters WHERE user_id = $1), 0)`, userID).Scan(&unread)
	})
	return unread, mapError(err)
}
