// Package acknotification is the ack-notification function: the caller
// marks a notification read, lowering their unread count once. The ack is
// decided by the persist participant alone (the delivery marked acked and
// an outbox row, in one transaction); gateway-ws's relay applies it at the
// counter. docs/architecture.md ("Acks") says why.
package acknotification

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Request is the body ack-notification accepts.
type Request struct {
	NotificationID int64 `json:"notification_id"`
}

// Handler acknowledges notifications.
type Handler struct {
	users   store.Querier // the directory
	persist *pgxpool.Pool // the persist participant's database
	tokens  *auth.Tokens
	acks    *twopc.AckWaiter
}

// New returns an ack-notification handler. rdb may be nil (every fresh
// ack then answers 202).
func New(users store.Querier, persist *pgxpool.Pool, tokens *auth.Tokens, rdb redis.UniversalClient, prefix string, s twopc.AckSettings, log *slog.Logger) *Handler {
	return &Handler{users: users, persist: persist, tokens: tokens, acks: twopc.NewAckWaiter(rdb, prefix, s, log)}
}

// Handle implements fn.Handler: it answers a twopc.AckAnswer. Acking
// twice is not an error and counts once.
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
	ctx := req.Context()
	return h.acks.Record(ctx, func() (int64, int64, error) {
		ackID, unread, err := store.RecordAck(ctx, h.persist, caller, in.NotificationID)
		if errors.Is(err, store.ErrNotFound) {
			err = fn.NotFound("no notification %d was delivered to you", in.NotificationID)
		}
		return ackID, unread, err
	})
}
