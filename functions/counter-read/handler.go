// Package counterread answers users' unread counts from the counter
// participant's database, for gateway-ws, whose own database (the
// directory) holds no counters. Internal.
package counterread

import (
	"net/http"

	"tidings/lib/fn"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Handler reads counters.
type Handler struct {
	counter store.Querier // the counter participant's database
}

// New returns a counter-read handler.
func New(counter store.Querier) *Handler { return &Handler{counter: counter} }

// Handle implements fn.Handler: 200 {"unread": {"<user>": n}}, 0 for a
// user never counted.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	var in twopc.UnreadQuery
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	if err := in.Check(); err != nil {
		return fn.Response{}, err
	}
	unread, err := store.UnreadOf(req.Context(), h.counter, in.Users)
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, twopc.Unread{Unread: unread})
}
