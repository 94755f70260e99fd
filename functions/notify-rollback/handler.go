// Package notifyrollback is the persist participant's rollback: a prepared
// notification is removed; a rollback that comes first is recorded so the
// late prepare is refused. Repeating it changes nothing. Internal.
package notifyrollback

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/barrier"
	"tidings/lib/fn"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Handler rolls notifications back.
type Handler struct {
	barrier *barrier.Barrier
}

// New returns a notify-rollback handler.
func New(db *pgxpool.Pool) *Handler {
	return &Handler{barrier: barrier.New(db, twopc.Persist)}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	return barrier.Decide(req, func(ctx context.Context, txID string) (twopc.Outcome, error) {
		err := h.barrier.Rollback(ctx, txID, func(ctx context.Context, tx pgx.Tx) error {
			return store.DropNotification(ctx, tx, txID)
		})
		return twopc.Outcome{State: barrier.RolledBack}, err
	})
}
