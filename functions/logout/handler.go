// Package logout is the logout function: the token the request is made
// with stops working everywhere, and the sockets opened with it close.
package logout

import (
	"net/http"

	"tidings/lib/auth"
	"tidings/lib/fn"
)

// Response is what a signed-out token answers (200).
type Response struct {
	LoggedOut bool `json:"logged_out"`
}

// Handler signs a token out.
type Handler struct {
	tokens *auth.Tokens
}

// New returns a logout handler; tokens must have a Guard.
func New(tokens *auth.Tokens) *Handler { return &Handler{tokens: tokens} }

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	session, err := h.tokens.Session(req)
	if err != nil {
		return fn.Response{}, err
	}
	if err := fn.DecodeEmpty(req); err != nil {
		return fn.Response{}, err
	}
	if err := h.tokens.Guard().RevokeToken(req.Context(), session); err != nil {
		return fn.Response{}, auth.UserGone(err)
	}
	return fn.JSON(http.StatusOK, Response{LoggedOut: true})
}
