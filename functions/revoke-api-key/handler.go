// Package revokeapikey is the revoke-api-key function: one of the caller's
// API keys stops working, in every process within the cache's
// invalidation delay.
package revokeapikey

import (
	"errors"
	"net/http"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// Request is the body revoke-api-key accepts.
type Request struct {
	ID int64 `json:"id"`
}

// Response is what a revocation answers (200); revoking a revoked key
// again answers the same.
type Response struct {
	ID      int64 `json:"id"`
	Revoked bool  `json:"revoked"`
}

// Handler revokes API keys.
type Handler struct {
	db     store.Querier
	tokens *auth.Tokens
}

// New returns a revoke-api-key handler; tokens must have a Guard.
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
	if in.ID <= 0 {
		return fn.Response{}, fn.BadRequest("id must be the id of one of your API keys")
	}
	err = h.tokens.Guard().RevokeKey(req.Context(), caller, in.ID)
	if errors.Is(err, store.ErrNotFound) {
		return fn.Response{}, fn.NotFound("you have no API key %d", in.ID)
	}
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, Response{ID: in.ID, Revoked: true})
}
