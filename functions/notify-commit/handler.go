// Package notifycommit is the persist participant's commit: the prepared
// notification becomes visible. Repeating it changes nothing. Internal.
package notifycommit

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/barrier"
	"tidings/lib/fn"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Handler commits notifications.
type Handler struct {
	db      *pgxpool.Pool
	barrier *barrier.Barrier
}

// New returns a notify-commit handler.
func New(db *pgxpool.Pool) *Handler {
	return &Handler{db: db, barrier: barrier.New(db, twopc.Persist)}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	return barrier.Decide(req, func(ctx context.Context, txID string) (twopc.Outcome, error) {
		err := h.barrier.Commit(ctx, txID, func(ctx context.Context, tx pgx.Tx) error {
			return store.CommitNotification(ctx, tx, txID)
		})
		if err != nil {
			return twopc.Outcome{}, err
		}
		id, err := store.NotificationByTx(ctx, h.db, txID)
		return twopc.Outcome{State: barrier.Committed, NotificationID: id}, err
	})
}
