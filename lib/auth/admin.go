package auth

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"tidings/lib/fn"
)

// bearerToken is the token of an "Authorization: Bearer <token>" header,
// or a 401 *fn.Error when there is none.
func bearerToken(h http.Header) (string, error) {
	token, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	token = strings.TrimSpace(token)
	if !ok || token == "" {
		return "", fn.Unauthorized("missing Bearer token")
	}
	return token, nil
}

// RequireAdmin checks that h carries the operator's admin key (the secret
// tidings-admin-key) as its Bearer token, compared in constant time, or
// answers a 401 *fn.Error. An empty key (none configured) admits nobody.
func RequireAdmin(h http.Header, key string) error {
	token, err := bearerToken(h)
	if err != nil {
		return err
	}
	if key == "" {
		return fn.Unauthorized("no admin key is configured (secret tidings-admin-key or $ADMIN_KEY)")
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(key)) != 1 {
		return fn.Unauthorized("wrong admin key")
	}
	return nil
}
