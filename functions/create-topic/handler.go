// Package createtopic is the create-topic function: the caller creates a
// topic and becomes its owner, the only one who may publish on it.
package createtopic

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/ratelimit"
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
	db      store.Querier
	tokens  *auth.Tokens
	limiter *ratelimit.Limiter
	quota   ratelimit.Limit
}

// New returns a create-topic handler; limiter enforces limits' quota on
// topics per user (a nil limiter, none).
func New(db store.Querier, tokens *auth.Tokens, limiter *ratelimit.Limiter, limits config.Limits) *Handler {
	return &Handler{db: db, tokens: tokens, limiter: limiter, quota: ratelimit.Topics(limits)}
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
	// A valid request spends the quota, created or not (a name taken).
	if resp, ok := ratelimit.Answer(h.limiter.Take(req.Context(), h.quota, strconv.FormatInt(caller, 10))); !ok {
		return resp, nil
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
