// Package notifyrollback is the persist participant's rollback: a prepared
// notification is removed; a rollback that comes first is recorded so the
// late prepare is refused. Repeating it changes nothing. Internal.
package notifyrollback

import (
	"context"
	"net/http"

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
	txID, err := twopc.ReadDecision(req)
	if err != nil {
		return fn.Response{}, err
	}
	err = h.barrier.Rollback(req.Context(), txID, func(ctx context.Context, tx pgx.Tx) error {
		return store.DropNotification(ctx, tx, txID)
	})
	if err != nil {
		return fn.Response{}, barrier.Answer(err)
	}
	return fn.JSON(http.StatusOK, twopc.Outcome{TxID: txID, State: barrier.RolledBack})
}
