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
	db     store.Querier
	tokens *auth.Tokens
}

// New returns a get-counter handler.
func New(db store.Querier, tokens *auth.Tokens) *Handler {
	return &Handler{db: db, tokens: tokens}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodGet); err != nil {
		return fn.Response{}, err
	}
	caller, err := h.tokens.KnownCaller(req, h.db)
	if err != nil {
		return fn.Response{}, err
	}
	unread, err := store.Unread(req.Context(), h.db, caller)
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, Response{Unread: unread})
}
