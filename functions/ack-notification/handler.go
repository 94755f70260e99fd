// Package acknotification is the ack-notification function: the caller
// marks a notification read, lowering their unread count once.
package acknotification

import (
	"errors"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// Request is the body ack-notification accepts.
type Request struct {
	NotificationID int64 `json:"notification_id"`
}

// Response is the caller's unread count after the ack.
type Response struct {
	Unread int64 `json:"unread"`
}

// Handler acknowledges notifications.
type Handler struct {
	users   store.Querier // the directory
	persist *pgxpool.Pool // the persist participant's database
	tokens  *auth.Tokens
}

// New returns an ack-notification handler.
func New(users store.Querier, persist *pgxpool.Pool, tokens *auth.Tokens) *Handler {
	return &Handler{users: users, persist: persist, tokens: tokens}
}

// Handle implements fn.Handler. Acking twice is not an error and counts once.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	caller, err := h.tokens.KnownCaller(req, h.users)
	if err != nil {
		return fn.Response{}, err
	}
	var in Request
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	if in.NotificationID <= 0 {
		return fn.Response{}, fn.BadRequest("notification_id must be a positive integer")
	}
	_, unread, err := store.RecordAck(req.Context(), h.persist, caller, in.NotificationID)
	if errors.Is(err, store.ErrNotFound) {
		return fn.Response{}, fn.NotFound("no notification %d was delivered to you", in.NotificationID)
	}
	if err != nil {
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, Response{Unread: unread})
}
