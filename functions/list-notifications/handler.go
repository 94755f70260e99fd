// Package listnotifications is the list-notifications function: the
// caller's delivered notifications, newest first, a page at a time.
package listnotifications

import (
	"net/http"
	"net/url"
	"strconv"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 200
)

// Response is one page; pass the last id as before= for the next.
type Response struct {
	Notifications []store.Notification `json:"notifications"`
}

// Handler lists notifications.
type Handler struct {
	db     store.Querier
	tokens *auth.Tokens
}

// New returns a list-notifications handler.
func New(db store.Querier, tokens *auth.Tokens) *Handler {
	return &Handler{db: db, tokens: tokens}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodGet); err != nil {
		return fn.Response{}, err
	}
	caller, err := h.tokens.Caller(req)
	if err != nil {
		return fn.Response{}, err
	}
	q, err := url.ParseQuery(req.QueryString)
	if err != nil {
		return fn.Response{}, fn.BadRequest("malformed query string")
	}
	limit, err := intParam(q, "limit", DefaultLimit, 1, MaxLimit)
	if err != nil {
		return fn.Response{}, err
	}
	before, err := intParam(q, "before", 0, 1, 1<<62)
	if err != nil {
		return fn.Response{}, err
	}
	list, err := store.ListNotifications(req.Context(), h.db, caller, int(limit), before)
	if err != nil {
		return fn.Response{}, err
	}
	if list == nil {
		list = []store.Notification{}
	}
	return fn.JSON(http.StatusOK, Response{Notifications: list})
}

// intParam reads an optional integer parameter within [lo, hi].
func intParam(q url.Values, name string, def, lo, hi int64) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, fn.BadRequest("%s must be an integer from %d to %d", name, lo, hi)
	}
	return n, nil
}
