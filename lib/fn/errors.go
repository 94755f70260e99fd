package fn

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a client-visible failure: an HTTP status plus the JSON body
// {"error":{"code":"...","message":"..."}}. Handlers return it for anything
// the caller did wrong; any other error becomes a 500 whose detail is logged
// and never shown.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Errorf builds an Error with a formatted message.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Common client errors.
func BadRequest(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, "bad_request", format, args...)
}

// Unauthorized is a missing or invalid credential.
func Unauthorized(format string, args ...any) *Error {
	return Errorf(http.StatusUnauthorized, "unauthorized", format, args...)
}

// Forbidden is a valid caller asking for something that is not theirs.
func Forbidden(format string, args ...any) *Error {
	return Errorf(http.StatusForbidden, "forbidden", format, args...)
}

// NotFound is a missing resource.
func NotFound(format string, args ...any) *Error {
	return Errorf(http.StatusNotFound, "not_found", format, args...)
}

// Conflict is a request that clashes with existing state.
func Conflict(format string, args ...any) *Error {
	return Errorf(http.StatusConflict, "conflict", format, args...)
}

// Unavailable is a server-side dependency (a database) not answering:
// nothing the caller did wrong, and worth trying again later.
func Unavailable(format string, args ...any) *Error {
	return Errorf(http.StatusServiceUnavailable, "unavailable", format, args...)
}

// Internal is the only body a client ever sees for a server-side failure.
func Internal() *Error {
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
}

// AsError returns err as a client-visible Error, or nil when it is not one.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
