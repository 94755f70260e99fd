// Package acknotification is the ack-notification function: the caller
// marks a notification read, lowering their unread count once. The ack is
// decided by the persist participant alone (the delivery marked acked and
// an outbox row, in one transaction); gateway-ws's relay applies it at the
// counter. docs/architecture.md ("Acks") says why.
package acknotification

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/logging"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Request is the body ack-notification accepts.
type Request struct {
	NotificationID int64 `json:"notification_id"`
}

// Response is the caller's unread count after the ack. Pending is true
// (with 202) when the counter had not applied the ack within
// Settings.Wait: the ack is recorded, Unread is the persist participant's
// count, and the counter applies it soon after.
type Response struct {
	Unread  int64 `json:"unread"`
	Pending bool  `json:"pending,omitempty"`
}

// Settings are ack-notification's own settings; DefaultSettings holds
// the defaults, which New also gives a zero field.
type Settings struct {
	// Wait is how long an ack waits for the relay to apply it at the
	// counter before answering 202; whole seconds (Redis BLPOP's
	// resolution), at least one.
	Wait time.Duration `env:"ACK_WAIT"`
}

// DefaultSettings is Settings' defaults.
func DefaultSettings() Settings { return Settings{Wait: 2 * time.Second} }

// Handler acknowledges notifications.
type Handler struct {
	users    store.Querier // the directory
	persist  *pgxpool.Pool // the persist participant's database
	tokens   *auth.Tokens
	redis    *redis.Client // nil: never waits for the counter
	prefix   string        // Redis key prefix
	settings Settings
	log      *slog.Logger
}

// New returns an ack-notification handler. rdb may be nil (every fresh
// ack then answers 202).
func New(users store.Querier, persist *pgxpool.Pool, tokens *auth.Tokens, rdb *redis.Client, prefix string, s Settings, log *slog.Logger) *Handler {
	config.OrDefault(&s.Wait, DefaultSettings().Wait)
	return &Handler{users: users, persist: persist, tokens: tokens, redis: rdb, prefix: prefix, settings: s, log: logging.Or(log)}
}

// Handle implements fn.Handler. Acking twice is not an error and counts
// once.
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
	ackID, unread, err := store.RecordAck(ctx, h.persist, caller, in.NotificationID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fn.Response{}, fn.NotFound("no notification %d was delivered to you", in.NotificationID)
	case store.Unreachable(err):
		h.log.Warn("persist database unreachable", "err", err)
		return fn.Response{}, fn.Unavailable("notifications cannot be acked right now; acking again later is safe")
	case err != nil:
		return fn.Response{}, err
	case ackID == 0: // acked before, and the counter applied it
		return fn.JSON(http.StatusOK, Response{Unread: unread})
	}
	if counted, ok := h.awaitCounter(ctx, ackID); ok {
		return fn.JSON(http.StatusOK, Response{Unread: counted})
	}
	return fn.JSON(http.StatusAccepted, Response{Unread: unread, Pending: true})
}

// awaitCounter wakes the relays and waits up to Settings.Wait for the
// counter's unread count after ack ackID. Best effort: without Redis, or
// past the wait, ok is false and the relay applies the ack later anyway.
// Two callers waiting on one ack (the same ack sent twice at once) share
// one answer: the other gets 202.
func (h *Handler) awaitCounter(ctx context.Context, ackID int64) (unread int64, ok bool) {
	if h.redis == nil {
		return 0, false
	}
	if err := h.redis.Publish(ctx, twopc.AckWakeChannel(h.prefix), ackID).Err(); err != nil {
		h.log.Warn("cannot wake the ack relays; they find the ack on their next pass", "ack", ackID, "err", err)
		return 0, false
	}
	got, err := h.redis.BLPop(ctx, h.settings.Wait, twopc.AckAnswerKey(h.prefix, ackID)).Result()
	if err != nil {
		if !errors.Is(err, redis.Nil) {
			h.log.Warn("waiting for the counter", "ack", ackID, "err", err)
		}
		return 0, false
	}
	n, err := twopc.ParseUnread(got[1])
	if err != nil {
		h.log.Warn("the relay's answer", "ack", ackID, "err", err)
		return 0, false
	}
	return n, true
}
