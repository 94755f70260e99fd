// Package createtopic is the create-topic function: the caller creates a
// topic and becomes its owner, the only one who may publish on it.
package createtopic

import (
	"errors"
	"net/http"
	"strings"
	"unicode/utf8"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// Request is the body create-topic accepts.
type Request struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Response is what a created topic answers (201).
type Response struct {
	Topic store.Topic `json:"topic"`
}

// Bounds on what a topic may hold.
const (
	MaxName        = 100
	MaxDescription = 1000
)

// Handler creates topics.
type Handler struct {
	db     store.Querier
	tokens *auth.Tokens
}

// New returns a create-topic handler.
func New(db store.Querier, tokens *auth.Tokens) *Handler {
	return &Handler{db: db, tokens: tokens}
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
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || utf8.RuneCountInString(in.Name) > MaxName {
		return fn.Response{}, fn.BadRequest("name must be 1 to %d characters", MaxName)
	}
	if err := fn.CheckText("description", in.Description, MaxDescription); err != nil {
		return fn.Response{}, err
	}
	topic, err := store.CreateTopic(req.Context(), h.db, caller, in.Name, in.Description)
	if errors.Is(err, store.ErrConflict) {
		return fn.Response{}, fn.Conflict("you already have a topic named %q", in.Name)
	}
	if err != nil {
		return fn.Response{}, auth.UserGone(err)
	}
	return fn.JSON(http.StatusCreated, Response{Topic: topic})
}
