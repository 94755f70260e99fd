// Package login is the login function: it trades an email and password for
// a token.
package login

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// Request is the body login accepts.
type Request struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// Response is what a successful login answers.
type Response struct {
	Token     string     `json:"token"`
	ExpiresAt time.Time  `json:"expires_at"`
	User      store.User `json:"user"`
}

// Handler logs users in.
type Handler struct {
	db     store.Querier
	tokens *auth.Tokens
}

// New returns a login handler.
func New(db store.Querier, tokens *auth.Tokens) *Handler {
	return &Handler{db: db, tokens: tokens}
}

// wrongCredentials is the one answer for an unknown email and a wrong
// password alike, so login does not reveal who has an account.
var wrongCredentials = fn.Unauthorized("wrong email or password")

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	var in Request
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	email := strings.TrimSpace(in.Email)
	if email == "" || in.Password == "" {
		return fn.Response{}, fn.BadRequest("email and password are required")
	}
	user, err := store.UserByEmail(req.Context(), h.db, email)
	if errors.Is(err, store.ErrNotFound) {
		auth.BurnPasswordCheck(in.Password)
		return fn.Response{}, wrongCredentials
	}
	if err != nil {
		return fn.Response{}, err
	}
	ok, err := auth.CheckPassword(in.Password, user.PasswordHash)
	if err != nil {
		return fn.Response{}, err
	}
	if !ok {
		return fn.Response{}, wrongCredentials
	}
	token, exp, err := h.tokens.Issue(user.ID)
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, Response{Token: token, ExpiresAt: exp, User: user})
}
