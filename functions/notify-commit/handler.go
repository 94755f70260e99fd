// Package notifycommit is the persist participant's commit: the prepared
// notification becomes visible. Repeating it changes nothing. Internal.
package notifycommit

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
	txID, err := twopc.ReadDecision(req)
	if err != nil {
		return fn.Response{}, err
	}
	err = h.barrier.Commit(req.Context(), txID, func(ctx context.Context, tx pgx.Tx) error {
		return store.CommitNotification(ctx, tx, txID)
	})
	if err != nil {
		return fn.Response{}, barrier.Answer(err)
	}
	id, err := store.NotificationByTx(req.Context(), h.db, txID)
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, twopc.Outcome{TxID: txID, State: barrier.Committed, NotificationID: id})
}
