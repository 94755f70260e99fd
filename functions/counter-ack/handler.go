// Package counterack is the counter participant's side of the ack relay:
// it lowers each ack's user's unread count once per ack id, however often
// the relay sends it, and answers the counts. Internal.
package counterack

import (
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/fn"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Handler applies acks.
type Handler struct {
	counter *pgxpool.Pool // the counter participant's database
}

// New returns a counter-ack handler.
func New(counter *pgxpool.Pool) *Handler { return &Handler{counter: counter} }

// Handle implements fn.Handler: 200 {"unread": {"<user>": n}} for every
// user named in the acks, applied now or before.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	var in twopc.Acks
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	if err := in.Check(); err != nil {
		return fn.Response{}, err
	}
	unread, err := store.ApplyAcks(req.Context(), h.counter, in.Acks)
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, twopc.Unread{Unread: unread})
}
