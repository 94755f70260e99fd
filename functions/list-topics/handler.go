// Package listtopics is the list-topics function: every topic, with its
// subscriber count and whether the caller is subscribed.
package listtopics

import (
	"net/http"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// Response is what list-topics answers.
type Response struct {
	Topics []store.TopicView `json:"topics"`
}

// Handler lists topics.
type Handler struct {
	db     store.Querier
	tokens *auth.Tokens
}

// New returns a list-topics handler.
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
	topics, err := store.ListTopics(req.Context(), h.db, caller)
	if err != nil {
		return fn.Response{}, err
	}
	if topics == nil {
		topics = []store.TopicView{}
	}
	return fn.JSON(http.StatusOK, Response{Topics: topics})
}
