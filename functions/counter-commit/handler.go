// Package countercommit is the counter participant's commit: the held
// increments are counted, once, in one statement. Its answer names no
// recipient (it would grow with the topic): the gateway reads the counts
// it pushes in batches (counter-read). Internal.
package countercommit

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/barrier"
	"tidings/lib/fn"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Handler commits counter increments.
type Handler struct {
	barrier *barrier.Barrier
}

// New returns a counter-commit handler.
func New(db *pgxpool.Pool) *Handler {
	return &Handler{barrier: barrier.New(db, twopc.Counter)}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	return barrier.Decide(req, func(ctx context.Context, txID string) (twopc.Outcome, error) {
		err := h.barrier.Commit(ctx, txID, func(ctx context.Context, tx pgx.Tx) error {
			_, err := store.ApplyIncrements(ctx, tx, txID)
			return err
		})
		return twopc.Outcome{State: barrier.Committed}, err
	})
}
