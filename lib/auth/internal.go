package auth

import (
	"crypto/subtle"

	"tidings/lib/fn"
)

// InternalKeyHeader carries the internal key from gateway-ws to internal
// functions.
const InternalKeyHeader = "X-Internal-Key"

// RequireInternal wraps an internal function (notify-*, counter-*,
// send-mail) so that any call without the internal key gets 401 before the
// handler runs.
func RequireInternal(key string, next fn.Handler) fn.Handler {
	return fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
		got := req.Header.Get(InternalKeyHeader)
		if key == "" || subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
			return fn.Response{}, fn.Unauthorized("internal function: missing or wrong internal key")
		}
		return next.Handle(req)
	})
}
