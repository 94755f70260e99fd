package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A recipient set is the recipients of one transaction, fixed in the
// directory when the coordinator publishes (FixRecipients) and read by
// both participants' prepares (HoldIncrements, PrepareNotification) and by
// the live delivery after commit, in chunks, so that no call body and no
// Redis record carries the ids. docs/architecture.md ("Two-phase commit")
// says why it is one row per transaction.

// RecipientChunk is how many recipients a participant reads from the set
// and writes to its own database at a time: a chunk's ids (80 KB) and its
// COPY stay small whatever the topic's size.
const RecipientChunk = 10000

// ErrRecipientSet is a prepare whose recipient set is gone or holds
// another count than the coordinator fixed: the participant votes no.
var ErrRecipientSet = errors.New("the transaction's recipient set is missing or changed")

// Copier is what COPY runs on: a connection or a transaction.
type Copier interface {
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, rows pgx.CopyFromSource) (int64, error)
}

// FixRecipients records the subscribers of topicID, as they are now, as
// the recipients of transaction txID, in one statement, and returns how
// many there are. q is the directory.
func FixRecipients(ctx context.Context, q Querier, txID string, topicID int64) (int, error) {
	var n int
	err := q.QueryRow(ctx, `
		INSERT INTO recipient_sets (tx_id, topic_id, recipients)
		SELECT $1, $2, coalesce(array_agg(user_id ORDER BY user_id), '{}') FROM subscriptions WHERE topic_id = $2
		RETURNING cardinality(recipients)`, txID, topicID).Scan(&n)
	return n, mapError(err)
}

// FixUserRecipients records the given users, each once, as the recipients
// of transaction txID, a direct notification's (a set on no topic), and
// returns how many there are. If any of them is not a user, it records
// nothing and returns those ids, sorted. One statement: the check and the
// write see the same users. q is the directory.
func FixUserRecipients(ctx context.Context, q Querier, txID string, users []int64) (n int, unknown []int64, err error) {
	err = q.QueryRow(ctx, `
		WITH asked AS (SELECT DISTINCT u FROM unnest($2::bigint[]) AS u),
		unknown AS (SELECT u FROM asked WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = asked.u)),
		fixed AS (
			INSERT INTO recipient_sets (tx_id, topic_id, recipients)
			SELECT $1, NULL, array_agg(u ORDER BY u) FROM asked
			HAVING count(*) > 0 AND NOT EXISTS (SELECT 1 FROM unknown)
			RETURNING cardinality(recipients) AS n)
		SELECT coalesce((SELECT array_agg(u ORDER BY u) FROM unknown), '{}'), coalesce((SELECT n FROM fixed), 0)`,
		txID, users).Scan(&unknown, &n)
	return n, unknown, mapError(err)
}

// Recipients returns at most limit recipients of txID from position from
// (0 is the first), in user id order: an empty slice past the end,
// ErrNotFound when the set is gone. q is the directory.
func Recipients(ctx context.Context, q Querier, txID string, from, limit int) ([]int64, error) {
	var ids []int64
	err := q.QueryRow(ctx, `SELECT recipients[$2 + 1 : $2 + $3] FROM recipient_sets WHERE tx_id = $1`,
		txID, from, limit).Scan(&ids)
	return ids, mapError(err)
}

// ForgetRecipients deletes the recipient set of txID, once nobody needs it:
// its transaction is finished and delivered. q is the directory.
func ForgetRecipients(ctx context.Context, q Querier, txID string) error {
	_, err := q.Exec(ctx, `DELETE FROM recipient_sets WHERE tx_id = $1`, txID)
	return mapError(err)
}

// StaleRecipientSets returns the transactions, at most limit, whose
// recipient sets were fixed longer than olderThan ago, oldest first: the
// candidates for a sweep of sets left by a coordinator that died before
// deleting them. q is the directory.
func StaleRecipientSets(ctx context.Context, q Querier, olderThan time.Duration, limit int) ([]string, error) {
	rows, err := q.Query(ctx, `SELECT tx_id FROM recipient_sets
		WHERE created_at < now() - make_interval(secs => $1) ORDER BY created_at LIMIT $2`, olderThan.Seconds(), limit)
	if err != nil {
		return nil, mapError(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, mapError(err)
}

// copyRecipients copies the recipient set of txID, read in chunks from dir,
// into table of dst, one row per recipient made by row; the set must hold
// want recipients (ErrRecipientSet otherwise).
func copyRecipients(ctx context.Context, dir Querier, dst Copier, txID string, want int,
	table string, columns []string, row func(user int64) []any) error {
	copied := 0
	for {
		ids, err := Recipients(ctx, dir, txID, copied, RecipientChunk)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: no set for %s", ErrRecipientSet, txID)
		}
		if err != nil {
			return fmt.Errorf("read the recipients of %s: %w", txID, err)
		}
		if len(ids) == 0 {
			break
		}
		if _, err := dst.CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromSlice(len(ids), func(i int) ([]any, error) {
			return row(ids[i]), nil
		})); err != nil {
			return mapError(err)
		}
		copied += len(ids)
		if len(ids) < RecipientChunk {
			break
		}
	}
	if copied != want {
		return fmt.Errorf("%w: %s holds %d recipients, the coordinator fixed %d", ErrRecipientSet, txID, copied, want)
	}
	return nil
}

// ReadsThrough is what a participant's transaction tx, on the participant's
// pool, reads the directory dir through: tx itself when dir is that same
// pool (one database for both, as when only DATABASE_URL is set), dir
// otherwise. Reading the recipient set through a second connection of the
// pool while tx holds one would deadlock once every connection is held by
// such a transaction, each waiting for another.
func ReadsThrough(dir Querier, pool *pgxpool.Pool, tx Tx) Querier {
	if p, ok := dir.(*pgxpool.Pool); ok && p == pool {
		return tx
	}
	return dir
}
