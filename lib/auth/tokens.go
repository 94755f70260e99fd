// Package auth issues and verifies access tokens, hashes passwords, and
// guards internal functions.
package auth

import (
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
type Tokens struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

// NewTokens returns a Tokens signing with key; tokens live for ttl.
func NewTokens(key []byte, ttl time.Duration) *Tokens {
	return &Tokens{key: key, ttl: ttl, now: time.Now}
}

// Issue returns a signed token for userID and when it expires.
func (t *Tokens) Issue(userID int64) (string, time.Time, error) {
	now := t.now()
	exp := now.Add(t.ttl).Truncate(time.Second)
	claims := jwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   strconv.FormatInt(userID, 10),
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.key)
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
}

// Verify returns the user id of a valid token.
func (t *Tokens) Verify(token string) (int64, error) {
	c, err := t.Parse(token)
	return c.UserID, err
}

// Parse returns the claims of a valid token: Verify for a caller that also
// needs to know when the token's rights end (an open socket).
func (t *Tokens) Parse(token string) (Claims, error) {
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) { return t.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(t.now),
	)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	id, err := strconv.ParseInt(claims.Subject, 10, 64)
	if err != nil || id <= 0 {
		return Claims{}, fmt.Errorf("%w: bad subject", ErrInvalidToken)
	}
	return Claims{UserID: id, ExpiresAt: claims.ExpiresAt.Time}, nil
}

// Caller returns the id of the user whose Bearer token authorises req, or a
// 401 for a missing, malformed, forged or expired token.
func (t *Tokens) Caller(req fn.Request) (int64, error) {
	return t.Bearer(req.Header)
}

// Bearer is Caller for a server that has the request's header, not an
// fn.Request: the user whose "Authorization: Bearer <token>" header
// authorises it, or a 401 *fn.Error. It is the one place a Bearer token is
// read from a request.
func (t *Tokens) Bearer(h http.Header) (int64, error) {
	token, err := bearerToken(h)
	if err != nil {
		return 0, err
	}
	id, err := t.Verify(token)
	if err != nil {
		return 0, fn.Unauthorized("invalid or expired token")
	}
	return id, nil
}
