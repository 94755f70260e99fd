// Package unsubscribe is the unsubscribe function. Unsubscribing from a
// topic one is not subscribed to is not an error.
package unsubscribe

import (
	"errors"
	"net/http"

	"tidings/lib/auth"
	"tidings/lib/directory"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// Request is the body unsubscribe accepts.
type Request struct {
	TopicID int64 `json:"topic_id"`
}

// Response is what unsubscribe answers.
type Response struct {
	TopicID    int64 `json:"topic_id"`
	Subscribed bool  `json:"subscribed"`
}

// Handler unsubscribes users from topics.
type Handler struct {
	db     store.Querier
	tokens *auth.Tokens
	dir    *directory.Directory
}

// New returns an unsubscribe handler.
func New(db store.Querier, tokens *auth.Tokens, dir *directory.Directory) *Handler {
	return &Handler{db: db, tokens: tokens, dir: dir}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	caller, err := h.tokens.KnownCaller(req, h.db)
	if err != nil {
		return fn.Response{}, err
	}
	var in Request
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	if in.TopicID <= 0 {
		return fn.Response{}, fn.BadRequest("topic_id must be a positive integer")
	}
	err = store.Unsubscribe(req.Context(), h.db, in.TopicID, caller)
	if errors.Is(err, store.ErrNotFound) {
		return fn.Response{}, fn.NotFound("topic %d does not exist", in.TopicID)
	}
	if err != nil {
		return fn.Response{}, err
	}
	h.dir.SubscriptionChanged(req.Context(), in.TopicID, caller)
	return fn.JSON(http.StatusOK, Response{TopicID: in.TopicID, Subscribed: false})
}
