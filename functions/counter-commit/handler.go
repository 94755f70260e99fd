// Package countercommit is the counter participant's commit: the held
// increments are counted, once. It answers each recipient's new unread
// count so the gateway can push it. Internal.
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

// Handle implements fn.Handler. A repeated commit answers no counts: the
// first one applied them.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	return barrier.Decide(req, func(ctx context.Context, txID string) (twopc.Outcome, error) {
		var unread map[int64]int64
		err := h.barrier.Commit(ctx, txID, func(ctx context.Context, tx pgx.Tx) error {
			var err error
			unread, err = store.ApplyIncrements(ctx, tx, txID)
			return err
		})
		return twopc.Outcome{State: barrier.Committed, Unread: unread}, err
	})
}
