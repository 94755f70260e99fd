// Package logoutall is the logout-all function: every token of the caller
// issued before now stops working everywhere (the request's own too), and
// the sockets opened with them close.
package logoutall

import (
	"net/http"
	"time"

	"tidings/lib/auth"
	"tidings/lib/fn"
)

// Response is what logout-all answers (200).
type Response struct {
	// RevokedBefore is the instant before which every token was issued.
	RevokedBefore time.Time `json:"revoked_before"`
}

// Handler signs every token of a user out.
type Handler struct {
	tokens *auth.Tokens
	now    func() time.Time
}

// New returns a logout-all handler; tokens must have a Guard.
func New(tokens *auth.Tokens) *Handler { return &Handler{tokens: tokens, now: time.Now} }

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
	now := h.now()
	if err := h.tokens.Guard().RevokeTokensBefore(req.Context(), session.UserID, now); err != nil {
		return fn.Response{}, auth.UserGone(err)
	}
	return fn.JSON(http.StatusOK, Response{RevokedBefore: now})
}
