// Package changepassword is the change-password function: with the current
// password, the caller sets a new one; every token issued before is
// revoked everywhere and a new one is answered.
package changepassword

import (
	"errors"
	"net/http"
	"time"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// Request is the body change-password accepts.
type Request struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// Response is what a changed password answers (200): the token to go on
// with, as login answers it.
type Response struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Handler changes passwords.
type Handler struct {
	db     store.Querier
	tokens *auth.Tokens
}

// New returns a change-password handler; tokens must have a Guard.
func New(db store.Querier, tokens *auth.Tokens) *Handler {
	return &Handler{db: db, tokens: tokens}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	session, err := h.tokens.Session(req)
	if err != nil {
		return fn.Response{}, err
	}
	var in Request
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	if in.CurrentPassword == "" {
		return fn.Response{}, fn.BadRequest("current_password is required")
	}
	if err := auth.CheckNewPassword("new_password", in.NewPassword); err != nil {
		return fn.Response{}, err
	}
	user, err := store.UserByID(req.Context(), h.db, session.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return fn.Response{}, auth.ErrUserGone()
	}
	if err != nil {
		return fn.Response{}, err
	}
	ok, err := auth.CheckPassword(in.CurrentPassword, user.PasswordHash)
	if err != nil {
		return fn.Response{}, err
	}
	if !ok {
		return fn.Response{}, fn.Forbidden("current_password is wrong")
	}
	hash, err := auth.HashPassword(in.NewPassword)
	if err != nil {
		return fn.Response{}, err
	}
	// The new token is issued after the instant the old ones are revoked
	// before, so it is not one of them.
	if err := h.tokens.Guard().ChangePassword(req.Context(), user.ID, hash, time.Now()); err != nil {
		return fn.Response{}, auth.UserGone(err)
	}
	token, exp, err := h.tokens.Issue(user.ID)
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, Response{Token: token, ExpiresAt: exp})
}
