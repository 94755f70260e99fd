// Package auth issues and verifies access tokens and API keys, hashes
// passwords, and guards internal functions. Tokens.Caller and
// Tokens.Bearer are the one place a request's credential is read: a
// token, checked against its revocations, or an API key, checked against
// the scope the function accepts (see Guard).
package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tidings/lib/fn"
)

const issuer = "tidings"

// Tokens issues and verifies HS256 JWTs whose subject is the user id.
// With a Guard (WithGuard) its Caller and Bearer also refuse revoked
// tokens and accept API keys of the scope For names.
type Tokens struct {
	key []byte
	ttl time.Duration
	now func() time.Time

	guard *Guard
	scope string // the API-key scope Caller accepts; empty: no key
}

// NewTokens returns a Tokens signing with key; tokens live for ttl.
func NewTokens(key []byte, ttl time.Duration) *Tokens {
	return &Tokens{key: key, ttl: ttl, now: time.Now}
}

// WithGuard returns a copy of t whose Caller and Bearer also ask g whether
// a token is revoked, and accept API keys (of the scope For names).
func (t *Tokens) WithGuard(g *Guard) *Tokens {
	c := *t
	c.guard = g
	return &c
}

// For returns a copy of t whose Caller and Bearer accept an API key
// holding scope (catalog.Function.KeyScope); empty: no API key (403).
func (t *Tokens) For(scope string) *Tokens {
	c := *t
	c.scope = scope
	return &c
}

// Guard returns the guard t checks credentials with; nil: none.
func (t *Tokens) Guard() *Guard { return t.guard }

// claims are a token's JWT claims: the registered ones, and the issue
// time to the microsecond, which logout-all compares with its instant (the
// standard iat has whole seconds: a token issued in the second of a
// logout-all, after it, would be revoked too).
type claims struct {
	jwt.RegisteredClaims
	IssuedAtMicros int64 `json:"iat_us"`
}

// Issue returns a signed token for userID and when it expires.
func (t *Tokens) Issue(userID int64) (string, time.Time, error) {
	now := t.now()
	exp := now.Add(t.ttl).Truncate(time.Second)
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			ID:        rand.Text(),
			Issuer:    issuer,
			Subject:   strconv.FormatInt(userID, 10),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		IssuedAtMicros: now.UnixMicro(),
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return signed, exp, nil
}

// ErrInvalidToken is any token that is malformed, forged or expired.
var ErrInvalidToken = errors.New("invalid token")

// Claims are what a valid token says.
type Claims struct {
	UserID    int64
	ExpiresAt time.Time
	IssuedAt  time.Time // to the microsecond
	JTI       string    // the token's own id, which logout revokes
}

// Verify returns the user id of a valid token. It does not ask whether the
// token is revoked: Caller and Bearer do.
func (t *Tokens) Verify(token string) (int64, error) {
	c, err := t.Parse(token)
	return c.UserID, err
}

// Parse returns the claims of a valid token: Verify for a caller that also
// needs to know when the token's rights end (an open socket). A token
// without a jti (issued before tokens had one) is refused: it could not be
// revoked.
func (t *Tokens) Parse(token string) (Claims, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(t.now),
	)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	if err != nil || id <= 0 {
		return Claims{}, fmt.Errorf("%w: bad subject", ErrInvalidToken)
	}
	if c.ID == "" || c.IssuedAt == nil {
		return Claims{}, fmt.Errorf("%w: no jti or iat", ErrInvalidToken)
	}
	issued := time.UnixMicro(c.IssuedAtMicros)
	if c.IssuedAtMicros == 0 || issued.Truncate(time.Second) != c.IssuedAt.Truncate(time.Second) {
		issued = c.IssuedAt.Time
	}
	return Claims{UserID: id, ExpiresAt: c.ExpiresAt.Time, IssuedAt: issued, JTI: c.ID}, nil
}

// Caller returns the id of the user whose Bearer credential authorises
// req: a token (not revoked, when t has a Guard) or an API key of the
// scope t is For, acting as its owner. Anything else is a 401; an API key
// out of its scope, a 403.
func (t *Tokens) Caller(req fn.Request) (int64, error) {
	return t.caller(req.Context(), req.Header)
}

// Bearer is Caller for a server that has the request's header, not an
// fn.Request: the user whose "Authorization: Bearer <credential>" header
// authorises it, or a 401 or 403 *fn.Error (503 when a Guard cannot tell).
// It is, with Caller, the one place a credential is read from a request.
func (t *Tokens) Bearer(h http.Header) (int64, error) {
	return t.caller(context.Background(), h)
}

// Session returns the claims of the request's Bearer token, not revoked:
// for the functions that act on the token itself (logout). An API key is
// refused with 403.
func (t *Tokens) Session(req fn.Request) (Claims, error) {
	raw, err := bearerToken(req.Header)
	if err != nil {
		return Claims{}, err
	}
	if IsAPIKey(raw) {
		return Claims{}, errKeyNotHere
	}
	return t.session(req.Context(), raw)
}

// errKeyNotHere answers an API key where the function accepts none.
var errKeyNotHere = fn.Forbidden("API keys may not call this; use a user's token")

// Recheck asks again whether the token of c, parsed earlier, is revoked
// (or its user gone): for an open socket, whose token was read once. Nil
// without a Guard.
func (t *Tokens) Recheck(ctx context.Context, c Claims) error {
	if t.guard == nil {
		return nil
	}
	return t.guard.checkToken(ctx, c)
}

func (t *Tokens) session(ctx context.Context, raw string) (Claims, error) {
	c, err := t.Parse(raw)
	if err != nil {
		return Claims{}, fn.Unauthorized("invalid or expired token")
	}
	if t.guard != nil {
		if err := t.guard.checkToken(ctx, c); err != nil {
			return Claims{}, err
		}
	}
	return c, nil
}

func (t *Tokens) caller(ctx context.Context, h http.Header) (int64, error) {
	raw, err := bearerToken(h)
	if err != nil {
		return 0, err
	}
	if IsAPIKey(raw) {
		if t.guard == nil {
			return 0, fn.Unauthorized("invalid or revoked API key")
		}
		return t.guard.keyCaller(ctx, raw, t.scope)
	}
	c, err := t.session(ctx, raw)
	return c.UserID, err
}
