// Package login is the login function: it trades an email and password for
// a token.
//
// Wrong passwords are throttled per account (the email, known or not) and
// per client address (lib/ratelimit.ClientAddress): once either budget is
// spent, every attempt on it answers 429 with Retry-After, the right
// password included, until the budget comes back. Other accounts and
// addresses are not affected. Each attempt checks the budgets before the
// password and spends them only on a wrong one, so concurrent attempts may
// overshoot a budget by at most login's concurrency limit.
package login

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/ratelimit"
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
	db         store.Querier
	tokens     *auth.Tokens
	limiter    *ratelimit.Limiter
	perAccount ratelimit.Limit
	perAddress ratelimit.Limit
}

// New returns a login handler throttled by limiter with limits' login
// rates; a nil limiter throttles nothing.
func New(db store.Querier, tokens *auth.Tokens, limiter *ratelimit.Limiter, limits config.Limits) *Handler {
	return &Handler{db: db, tokens: tokens, limiter: limiter,
		perAccount: ratelimit.LoginPerAccount(limits), perAddress: ratelimit.LoginPerAddress(limits)}
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
	account, address := strings.ToLower(email), ratelimit.ClientAddress(req.Header)
	if resp, ok := ratelimit.Answer(h.throttled(req, account, address)); !ok {
		return resp, nil
	}
	user, err := store.UserByEmail(req.Context(), h.db, email)
	if errors.Is(err, store.ErrNotFound) {
		auth.BurnPasswordCheck(in.Password)
		return h.refuse(req, account, address)
	}
	if err != nil {
		return fn.Response{}, err
	}
	ok, err := auth.CheckPassword(in.Password, user.PasswordHash)
	if err != nil {
		return fn.Response{}, err
	}
	if !ok {
		return h.refuse(req, account, address)
	}
	token, exp, err := h.tokens.Issue(user.ID)
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, Response{Token: token, ExpiresAt: exp, User: user})
}

// throttled is the refusal (*ratelimit.Exceeded, or ErrUnavailable when
// the limiter fails closed) of an attempt on a spent budget, or nil.
func (h *Handler) throttled(req fn.Request, account, address string) error {
	if err := h.limiter.Check(req.Context(), h.perAccount, account); err != nil {
		return err
	}
	if address == "" {
		return nil
	}
	return h.limiter.Check(req.Context(), h.perAddress, address)
}

// refuse spends the account's and the address's budgets on a wrong
// password or unknown email and answers 401, the same either way.
func (h *Handler) refuse(req fn.Request, account, address string) (fn.Response, error) {
	// The refusal is 401 whatever the limiter says: a spent budget shows
	// from the next attempt on.
	_ = h.limiter.Take(req.Context(), h.perAccount, account)
	if address != "" {
		_ = h.limiter.Take(req.Context(), h.perAddress, address)
	}
	return fn.Response{}, wrongCredentials
}
