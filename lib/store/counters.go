package store

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// HoldIncrements records one pending unread increment per recipient of
// transaction txID, read from dir (the directory) in chunks and copied
// into tx; the set must hold want recipients (ErrRecipientSet otherwise).
// They count only once applied.
func HoldIncrements(ctx context.Context, tx Tx, dir Querier, txID string, want int) error {
	return copyRecipients(ctx, dir, tx, txID, want, "pending_increments", []string{"tx_id", "user_id"},
		func(user int64) []any { return []any{txID, user} })
}

// ApplyIncrements adds a transaction's pending increments to the counters,
// removes them, and returns how many it applied: one statement, whatever
// the count. The recipients' new counts are read afterwards, in batches
// (UnreadOf), by whoever delivers the notification.
func ApplyIncrements(ctx context.Context, q Querier, txID string) (int64, error) {
	tag, err := q.Exec(ctx, `
		WITH applied AS (DELETE FROM pending_increments WHERE tx_id = $1 RETURNING user_id)
		INSERT INTO counters (user_id, unread) SELECT user_id, 1 FROM applied
		ON CONFLICT (user_id) DO UPDATE SET unread = counters.unread + 1`, txID)
	return tag.RowsAffected(), mapError(err)
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

// UnreadOf returns the unread count of each of users (0 for a user the
// counter never counted).
func UnreadOf(ctx context.Context, q Querier, users []int64) (map[int64]int64, error) {
	unread, err := perUser(ctx, q, `
		SELECT u, coalesce(c.unread, 0) FROM unnest($1::bigint[]) AS u LEFT JOIN counters c ON c.user_id = u`, users)
	return unread, mapError(err)
}

// ApplyAcks lowers the unread count of each ack's user by the ack's
// Deliveries once per ack id, however often the same ack arrives, and
// returns the unread count of every user named in acks. The counter side
// of an ack (see RecordAck and RecordAckAll).
func ApplyAcks(ctx context.Context, db Beginner, acks []Ack) (map[int64]int64, error) {
	ids := make([]int64, len(acks))
	users := make([]int64, len(acks))
	deliveries := make([]int64, len(acks))
	for i, a := range acks {
		ids[i], users[i], deliveries[i] = a.ID, a.UserID, a.Deliveries
	}
	var unread map[int64]int64
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			WITH acks AS (
				SELECT DISTINCT ON (id) * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS a (id, user_id, deliveries)
			), fresh AS (
				INSERT INTO applied_acks (ack_id, user_id) SELECT id, user_id FROM acks
				ON CONFLICT DO NOTHING RETURNING ack_id
			), per_user AS (
				SELECT a.user_id, sum(a.deliveries) AS n FROM fresh f JOIN acks a ON a.id = f.ack_id GROUP BY a.user_id
			)
			UPDATE counters c SET unread = greatest(c.unread - p.n, 0) FROM per_user p WHERE c.user_id = p.user_id`, ids, users, deliveries)
		if err != nil {
			return err
		}
		unread, err = UnreadOf(ctx, tx, users)
		return err
	})
	return unread, mapError(err)
}

// perUser runs a query of (user id, count) rows into a map.
func perUser(ctx context.Context, q Querier, query string, args ...any) (map[int64]int64, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	m := map[int64]int64{}
	var user, n int64
	_, err = pgx.ForEachRow(rows, []any{&user, &n}, func() error {
		m[user] = n
		return nil
	})
	return m, err
}
