// Package listnotifications is the list-notifications function: the
// caller's delivered notifications, newest first, a page at a time; with
// unread=true only those not acked yet.
package listnotifications

import (
	"net/http"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/notification"
	"tidings/lib/store"
)

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 200
)

// Response is one page; pass the last id as before= for the next.
type Response struct {
	Notifications []notification.Notification `json:"notifications"`
}

// Handler lists notifications.
type Handler struct {
	users   store.Querier // the directory
	persist store.Querier // the persist participant's database
	tokens  *auth.Tokens
}

// New returns a list-notifications handler.
func New(users, persist store.Querier, tokens *auth.Tokens) *Handler {
	return &Handler{users: users, persist: persist, tokens: tokens}
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodGet); err != nil {
		return fn.Response{}, err
	}
	caller, err := h.tokens.KnownCaller(req, h.users)
	if err != nil {
		return fn.Response{}, err
	}
	q, err := fn.ParseQuery(req)
	if err != nil {
		return fn.Response{}, err
	}
	limit, err := fn.QueryInt(q, "limit", DefaultLimit, 1, MaxLimit)
	if err != nil {
		return fn.Response{}, err
	}
	before, err := fn.QueryInt(q, "before", 0, 1, 1<<62)
	if err != nil {
		return fn.Response{}, err
	}
	unread, err := fn.QueryBool(q, "unread")
	if err != nil {
		return fn.Response{}, err
	}
	list, err := store.ListNotifications(req.Context(), h.persist, caller, int(limit), before, unread)
	if err != nil {
		return fn.Response{}, err
	}
	if list == nil {
		list = []notification.Notification{}
	}
	return fn.JSON(http.StatusOK, Response{Notifications: list})
}
