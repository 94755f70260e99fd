// Package notifyindoubt lists the persist participant's transactions held
// prepared for longer than asked, so gateway-ws's recovery can finish them
// even when their Redis record is lost. Internal.
package notifyindoubt

import (
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/barrier"
	"tidings/lib/fn"
	"tidings/lib/twopc"
)

// Handler lists in-doubt notifications.
type Handler struct {
	barrier *barrier.Barrier
}

// New returns a notify-indoubt handler.
func New(db *pgxpool.Pool) *Handler {
	return &Handler{barrier: barrier.New(db, twopc.Persist)}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	return h.barrier.ServeInDoubt(req)
}
