// Package getcounter is the get-counter function: the caller's unread count.
package getcounter

import (
	"net/http"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// Response is the caller's unread count.
type Response struct {
	Unread int64 `json:"unread"`
}

// Handler reads counters.
type Handler struct {
	users    store.Querier // the directory
	counters store.Querier // the counter participant's database
	tokens   *auth.Tokens
}

// New returns a get-counter handler.
func New(users, counters store.Querier, tokens *auth.Tokens) *Handler {
	return &Handler{users: users, counters: counters, tokens: tokens}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodGet); err != nil {
		return fn.Response{}, err
	}
	caller, err := h.tokens.KnownCaller(req, h.users)
	if err != nil {
		return fn.Response{}, err
	}
	unread, err := store.Unread(req.Context(), h.counters, caller)
	if store.Unreachable(err) {
		return fn.Response{}, fn.Unavailable("the unread count cannot be read right now")
	}
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, Response{Unread: unread})
}
