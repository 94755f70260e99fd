// Package subscribe is the subscribe function: the caller subscribes to a
// topic. Subscribing again is not an error; it updates the email preference.
package subscribe

import (
	"errors"
	"net/http"

	"tidings/lib/auth"
	"tidings/lib/directory"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// Request is the body subscribe accepts. Email asks for each notification
// on the topic to be mailed as well.
type Request struct {
	TopicID int64 `json:"topic_id"`
	Email   bool  `json:"email"`
}

// Response is what subscribe answers.
type Response struct {
	TopicID    int64 `json:"topic_id"`
	Subscribed bool  `json:"subscribed"`
	Email      bool  `json:"email"`
}

// Handler subscribes users to topics.
type Handler struct {
	db     store.Querier
	tokens *auth.Tokens
	dir    *directory.Directory
}

// New returns a subscribe handler.
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
	err = store.Subscribe(req.Context(), h.db, in.TopicID, caller, in.Email)
	if errors.Is(err, store.ErrNotFound) {
		return fn.Response{}, fn.NotFound("topic %d does not exist", in.TopicID)
	}
	if err != nil {
		return fn.Response{}, auth.UserGone(err)
	}
	h.dir.SubscriptionChanged(req.Context(), in.TopicID, caller)
	return fn.JSON(http.StatusOK, Response{TopicID: in.TopicID, Subscribed: true, Email: in.Email})
}
