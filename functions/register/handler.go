// Package register is the register function: it creates an account and
// answers with a token, so a new user is signed in at once.
package register

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// Request is the body register accepts.
type Request struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Name     string `json:"name"`
}

// Response is what a successful registration answers (201).
type Response struct {
	User      store.User `json:"user"`
	Token     string     `json:"token"`
	ExpiresAt time.Time  `json:"expires_at"`
}

// Bounds on a name and an email (a password's are auth.CheckNewPassword's).
const (
	MaxName  = 100
	MaxEmail = 254
)

// Handler registers users.
type Handler struct {
	db     store.Querier
	tokens *auth.Tokens
}

// New returns a register handler.
func New(db store.Querier, tokens *auth.Tokens) *Handler {
	return &Handler{db: db, tokens: tokens}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	var in Request
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	email, err := validate(&in)
	if err != nil {
		return fn.Response{}, err
	}
	hash, err := auth.HashPassword(in.Password)
	if err != nil {
		return fn.Response{}, err
	}
	user, err := store.CreateUser(req.Context(), h.db, email, in.Name, hash, AvatarURL(email))
	if errors.Is(err, store.ErrConflict) {
		return fn.Response{}, fn.Conflict("email %s is already registered", email)
	}
	if err != nil {
		return fn.Response{}, err
	}
	token, exp, err := h.tokens.Issue(user.ID)
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusCreated, Response{User: user, Token: token, ExpiresAt: exp})
}

// AvatarURL is a user's avatar: gen-avatar seeded with a hash of the
// lower-cased email, so it is stable for the account without revealing
// the address. It is relative, served wherever the functions are.
func AvatarURL(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(email)))
	return "/function/gen-avatar?seed=" + hex.EncodeToString(sum[:8])
}

// validate checks the request and returns the email in its stored form.
func validate(in *Request) (string, error) {
	addr, err := mail.ParseAddress(strings.TrimSpace(in.Email))
	if err != nil || addr.Name != "" || len(addr.Address) > MaxEmail {
		return "", fn.BadRequest("email must be a plain address like ada@example.com")
	}
	if err := auth.CheckNewPassword("password", in.Password); err != nil {
		return "", err
	}
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || utf8.RuneCountInString(in.Name) > MaxName {
		return "", fn.BadRequest("name must be 1 to %d characters", MaxName)
	}
	return addr.Address, nil
}
