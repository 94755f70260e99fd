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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/fn"
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

// Answer turns the barrier's refusals into the 409 a participant answers,
// and passes any other error through.
func Answer(err error) error {
	switch {
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
