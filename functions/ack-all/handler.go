// Package ackall is the ack-all function: the caller marks every
// notification delivered to them read, and their unread count drops to 0.
// It is an ack like ack-notification's, of all the caller's unacked
// deliveries at once: decided by the persist participant alone (the
// deliveries marked and one outbox row standing for all of them, in one
// transaction), applied at the counter by gateway-ws's relay.
// docs/architecture.md ("Acks") says why and how it counts once.
package ackall

import (
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Handler acknowledges all of a caller's notifications.
type Handler struct {
	users   store.Querier // the directory
	persist *pgxpool.Pool // the persist participant's database
	tokens  *auth.Tokens
	acks    *twopc.AckWaiter
}

// New returns an ack-all handler. rdb may be nil (every ack-all that
// marks something then answers 202).
func New(users store.Querier, persist *pgxpool.Pool, tokens *auth.Tokens, rdb redis.UniversalClient, prefix string, s twopc.AckSettings, log *slog.Logger) *Handler {
	return &Handler{users: users, persist: persist, tokens: tokens, acks: twopc.NewAckWaiter(rdb, prefix, s, log)}
}

// Handle implements fn.Handler: it answers a twopc.AckAnswer, {unread: 0}
// once the counter applied the ack (more only if a notification arrived
// meanwhile), or 202 pending as ack-notification does. The body is {}.
// Calling it again marks nothing and changes no count.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	caller, err := h.tokens.KnownCaller(req, h.users)
	if err != nil {
		return fn.Response{}, err
	}
	if err := fn.DecodeEmpty(req); err != nil {
		return fn.Response{}, err
	}
	ctx := req.Context()
	return h.acks.Record(ctx, func() (int64, int64, error) { return store.RecordAckAll(ctx, h.persist, caller) })
}
