// Package barrier is the participant side of tidings's two-phase commit:
// a row per transaction and participant in PostgreSQL that makes prepare,
// commit and rollback safe to repeat and to receive out of order.
//
//   - Prepare does its work once; a repeated prepare succeeds without
//     redoing it; a prepare after the transaction's rollback is refused.
//   - Commit applies the prepared work once; repeats succeed.
//   - Rollback undoes prepared work once; a rollback before (or without)
//     its prepare is recorded and succeeds, fencing off the late prepare.
//
// The barrier row and the participant's work change in one database
// transaction, so a crash leaves either both or neither.
package barrier

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/fn"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// States of a barrier row.
const (
	Prepared   = "prepared"
	Committed  = "committed"
	RolledBack = "rolled_back"
)

// Errors a participant answers with 409.
var (
	ErrRolledBack  = errors.New("transaction was already rolled back")
	ErrCommitted   = errors.New("transaction was already committed")
	ErrNotPrepared = errors.New("transaction was never prepared here")
)

// Answer turns the barrier's refusals, and a prepare's recipient set that
// is gone or changed, into the 409 a participant answers (a no the
// coordinator does not retry), and passes any other error through.
func Answer(err error) error {
	switch {
	case errors.Is(err, store.ErrRecipientSet):
		return fn.Errorf(http.StatusConflict, "recipient_set", "%v", err)
	case errors.Is(err, ErrRolledBack):
		return fn.Errorf(http.StatusConflict, "rolled_back", "%v", err)
	case errors.Is(err, ErrCommitted):
		return fn.Errorf(http.StatusConflict, "committed", "%v", err)
	case errors.Is(err, ErrNotPrepared):
		return fn.Errorf(http.StatusConflict, "not_prepared", "%v", err)
	}
	return err
}

// Work is a participant's change, run inside the barrier's transaction.
type Work func(ctx context.Context, tx pgx.Tx) error

// Barrier guards one participant's transactions.
type Barrier struct {
	db          *pgxpool.Pool
	participant string
}

// New returns the barrier of the named participant.
func New(db *pgxpool.Pool, participant string) *Barrier {
	return &Barrier{db: db, participant: participant}
}

// Prepare runs work unless txID was prepared before (nothing to do) or
// rolled back (ErrRolledBack).
func (b *Barrier) Prepare(ctx context.Context, txID string, work Work) error {
	return b.step(ctx, txID, "prepare", func(ctx context.Context, tx pgx.Tx, state string, created bool) (string, error) {
		switch {
		case created:
			return Prepared, work(ctx, tx)
		case state == RolledBack:
			return "", ErrRolledBack
		default: // prepared or committed: the work is already done
			return "", nil
		}
	}, Prepared)
}

// Commit applies the prepared work once; ErrNotPrepared for an unknown
// transaction, ErrRolledBack for one rolled back.
func (b *Barrier) Commit(ctx context.Context, txID string, work Work) error {
	return b.step(ctx, txID, "commit", func(ctx context.Context, tx pgx.Tx, state string, created bool) (string, error) {
		switch state {
		case Prepared:
			return Committed, work(ctx, tx)
		case Committed:
			return "", nil
		case RolledBack:
			return "", ErrRolledBack
		}
		return "", ErrNotPrepared
	}, "")
}

// Rollback undoes prepared work once. A rollback of a transaction never
// prepared here is recorded, so its prepare, should it still arrive, is
// refused. ErrCommitted for a committed transaction.
func (b *Barrier) Rollback(ctx context.Context, txID string, undo Work) error {
	return b.step(ctx, txID, "rollback", func(ctx context.Context, tx pgx.Tx, state string, created bool) (string, error) {
		switch {
		case created:
			return "", nil // recorded as rolled back by the insert
		case state == Prepared:
			return RolledBack, undo(ctx, tx)
		case state == Committed:
			return "", ErrCommitted
		}
		return "", nil
	}, RolledBack)
}

// step locks the barrier row of txID (inserting it in state insertAs when
// insertAs is set and the row is missing), lets decide act on the current
// state, and stores the state decide returns ("" keeps it).
func (b *Barrier) step(ctx context.Context, txID, phase string,
	decide func(ctx context.Context, tx pgx.Tx, state string, created bool) (string, error), insertAs string) error {
	err := pgx.BeginFunc(ctx, b.db, func(tx pgx.Tx) error {
		created := false
		if insertAs != "" {
			tag, err := tx.Exec(ctx, `INSERT INTO tx_barriers (tx_id, participant, state) VALUES ($1, $2, $3)
				ON CONFLICT DO NOTHING`, txID, b.participant, insertAs)
			if err != nil {
				return err
			}
			created = tag.RowsAffected() == 1
		}
		var state string
		err := tx.QueryRow(ctx, `SELECT state FROM tx_barriers WHERE tx_id = $1 AND participant = $2 FOR UPDATE`,
			txID, b.participant).Scan(&state)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		next, err := decide(ctx, tx, state, created)
		if err != nil {
			return err
		}
		if next != "" && next != state {
			_, err = tx.Exec(ctx, `UPDATE tx_barriers SET state = $3, updated_at = now() WHERE tx_id = $1 AND participant = $2`,
				txID, b.participant, next)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%s %s on %s: %w", phase, txID, b.participant, err)
	}
	return nil
}

// Decide serves a commit or rollback call: it reads the decision's
// transaction id, runs step, and answers the outcome step returns, or the
// barrier's refusal as a 409.
func Decide(req fn.Request, step func(ctx context.Context, txID string) (twopc.Outcome, error)) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	var d twopc.Decision
	if err := fn.DecodeJSON(req, &d); err != nil {
		return fn.Response{}, err
	}
	if err := twopc.CheckTxID(d.TxID); err != nil {
		return fn.Response{}, err
	}
	txID := d.TxID
	outcome, err := step(req.Context(), txID)
	if err != nil {
		return fn.Response{}, Answer(err)
	}
	outcome.TxID = txID
	return fn.JSON(http.StatusOK, outcome)
}

// InDoubt lists the transactions this participant has held prepared for
// longer than olderThan, oldest first, at most limit of them. Their
// coordinator is late or gone, possibly with its record: recovery finishes
// them from what the participants say alone.
func (b *Barrier) InDoubt(ctx context.Context, olderThan time.Duration, limit int) ([]string, error) {
	rows, err := b.db.Query(ctx, `SELECT tx_id FROM tx_barriers
		WHERE participant = $1 AND state = 'prepared' AND updated_at < now() - make_interval(secs => $2)
		ORDER BY updated_at LIMIT $3`, b.participant, olderThan.Seconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("in-doubt transactions of %s: %w", b.participant, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("in-doubt transactions of %s: %w", b.participant, err)
	}
	return ids, nil
}

// InDoubtHandler returns the function listing participant's in-doubt
// transactions (notify-indoubt, counter-indoubt): it serves ServeInDoubt.
func InDoubtHandler(db *pgxpool.Pool, participant string) fn.Handler {
	return fn.HandlerFunc(New(db, participant).ServeInDoubt)
}

// ServeInDoubt serves an in-doubt query (notify-indoubt, counter-indoubt):
// it reads a twopc.InDoubtQuery and answers the barrier's twopc.InDoubt.
func (b *Barrier) ServeInDoubt(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	var q twopc.InDoubtQuery
	if err := fn.DecodeJSON(req, &q); err != nil {
		return fn.Response{}, err
	}
	if q.OlderThanMs < 0 || q.OlderThanMs > maxInDoubtAge.Milliseconds() {
		return fn.Response{}, fn.BadRequest("older_than_ms must be 0 to %d", maxInDoubtAge.Milliseconds())
	}
	if q.Limit < 0 || q.Limit > twopc.MaxInDoubt {
		return fn.Response{}, fn.BadRequest("limit must be 0 to %d", twopc.MaxInDoubt)
	}
	if q.Limit == 0 {
		q.Limit = twopc.MaxInDoubt
	}
	ids, err := b.InDoubt(req.Context(), time.Duration(q.OlderThanMs)*time.Millisecond, q.Limit)
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, twopc.InDoubt{TxIDs: append([]string{}, ids...)})
}

// maxInDoubtAge bounds an in-doubt query's age, so that it stays a valid
// PostgreSQL interval.
const maxInDoubtAge = 365 * 24 * time.Hour
