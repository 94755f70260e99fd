// Package listapikeys is the list-api-keys function: the caller's API
// keys, revoked ones too, newest first, never the keys themselves.
package listapikeys

import (
	"net/http"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// Response is what list-api-keys answers.
type Response struct {
	APIKeys []store.APIKey `json:"api_keys"`
}

// Handler lists API keys.
type Handler struct {
	db     store.Querier
	tokens *auth.Tokens
}

// New returns a list-api-keys handler.
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
	keys, err := store.ListAPIKeys(req.Context(), h.db, caller)
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, Response{APIKeys: keys})
}
