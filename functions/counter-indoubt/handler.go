// Package counterindoubt lists the counter participant's transactions held
// prepared for longer than asked, so gateway-ws's recovery can finish them
// even when their Redis record is lost. Internal.
package counterindoubt

import (
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/barrier"
	"tidings/lib/fn"
	"tidings/lib/twopc"
)

// Handler lists in-doubt counter increments.
type Handler struct {
	barrier *barrier.Barrier
}

// New returns a counter-indoubt handler.
func New(db *pgxpool.Pool) *Handler {
	return &Handler{barrier: barrier.New(db, twopc.Counter)}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	return h.barrier.ServeInDoubt(req)
}
