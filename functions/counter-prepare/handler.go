// Package counterprepare is the counter participant's prepare: it holds one
// unread increment per recipient, not counted until commit. The recipients
// are the transaction's recipient set, which the coordinator fixed in the
// directory and this reads in chunks. Internal.
package counterprepare

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

// Handler prepares counter increments.
type Handler struct {
	directory store.Querier // where the recipient sets are
	db        *pgxpool.Pool // the counter participant's
	barrier   *barrier.Barrier
}

// New returns a counter-prepare handler on the directory (read only: the
// recipient sets) and the counter participant's database.
func New(directory store.Querier, db *pgxpool.Pool) *Handler {
	return &Handler{directory: directory, db: db, barrier: barrier.New(db, twopc.Counter)}
}

// Handle implements fn.Handler: 200 with a yes vote, or an error (a no).
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	var in twopc.CounterPrepare
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	if err := twopc.CheckTxID(in.TxID); err != nil {
		return fn.Response{}, err
	}
	if err := twopc.CheckRecipients(in.Recipients); err != nil {
		return fn.Response{}, err
	}
	err := h.barrier.Prepare(req.Context(), in.TxID, func(ctx context.Context, tx pgx.Tx) error {
		return store.HoldIncrements(ctx, tx, store.ReadsThrough(h.directory, h.db, tx), in.TxID, in.Recipients)
	})
	if err != nil {
		return fn.Response{}, barrier.Answer(err)
	}
	return fn.JSON(http.StatusOK, twopc.Vote{TxID: in.TxID, Prepared: true})
}
