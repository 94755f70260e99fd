package twopc

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/logging"
	"tidings/lib/redisx"
	"tidings/lib/store"
)

// AckAnswer is what ack-notification and ack-all answer: the caller's
// unread count after the ack. Pending is true (with 202) when the counter
// had not applied the ack within AckSettings.Wait: the ack is recorded,
// Unread is the persist participant's count, and the counter applies it
// soon after.
type AckAnswer struct {
	Unread  int64 `json:"unread"`
	Pending bool  `json:"pending,omitempty"`
}

// AckSettings are the settings of the functions that record acks
// (ack-notification, ack-all); DefaultAckSettings holds the defaults,
// which NewAckWaiter also gives a zero field.
type AckSettings struct {
	// Wait is how long an ack waits for the relay to apply it at the
	// counter before answering 202; whole seconds (Redis BLPOP's
	// resolution), at least one.
	Wait time.Duration `env:"ACK_WAIT"`
}

// DefaultAckSettings is AckSettings' defaults.
func DefaultAckSettings() AckSettings { return AckSettings{Wait: 2 * time.Second} }

// AckWaiter answers an ack the persist participant recorded, with the
// counter's count once the relay applied it (docs/architecture.md,
// "Acks").
type AckWaiter struct {
	redis    redis.UniversalClient // nil: never waits for the counter
	prefix   string                // Redis key prefix
	settings AckSettings
	log      *slog.Logger
}

// NewAckWaiter returns an AckWaiter on rdb, which may be nil (every fresh
// ack then answers 202).
func NewAckWaiter(rdb redis.UniversalClient, prefix string, s AckSettings, log *slog.Logger) *AckWaiter {
	config.OrDefault(&s.Wait, DefaultAckSettings().Wait)
	return &AckWaiter{redis: rdb, prefix: prefix, settings: s, log: logging.Or(log)}
}

// Record runs record, which records an ack at the persist participant
// and returns its outbox row (0 when no ack of the caller is pending) and
// the caller's unread count there, and answers it: 200 with the counter's
// count once the relay applied the row, 200 with unread when there is no
// row to wait for, else, past the wait, 202 pending with unread. An
// unreachable persist database is a 503 (acking again is safe); an fn
// error from record is its answer.
func (w *AckWaiter) Record(ctx context.Context, record func() (ackID, unread int64, err error)) (fn.Response, error) {
	ackID, unread, err := record()
	switch {
	case store.Unreachable(err):
		w.log.Warn("persist database unreachable", "err", err)
		return fn.Response{}, fn.Unavailable("notifications cannot be acked right now; acking again later is safe")
	case err != nil:
		return fn.Response{}, err
	case ackID == 0:
		return fn.JSON(http.StatusOK, AckAnswer{Unread: unread})
	}
	if counted, ok := w.await(ctx, ackID); ok {
		return fn.JSON(http.StatusOK, AckAnswer{Unread: counted})
	}
	return fn.JSON(http.StatusAccepted, AckAnswer{Unread: unread, Pending: true})
}

// await wakes the relays and waits up to the settings' Wait for the
// counter's unread count after ack ackID. Best effort: without Redis, or
// past the wait, ok is false and the relay applies the ack later anyway.
// Two callers waiting on one ack (the same ack sent twice at once, or an
// ack-all sent again while the first waits) share one answer: the other
// gets 202.
func (w *AckWaiter) await(ctx context.Context, ackID int64) (unread int64, ok bool) {
	if w.redis == nil {
		return 0, false
	}
	if err := redisx.Publish(ctx, w.redis, AckWakeChannel(w.prefix), ackID).Err(); err != nil {
		w.log.Warn("cannot wake the ack relays; they find the ack on their next pass", "ack", ackID, "err", err)
		return 0, false
	}
	got, err := w.redis.BLPop(ctx, w.settings.Wait, AckAnswerKey(w.prefix, ackID)).Result()
	if err != nil {
		if !errors.Is(err, redis.Nil) {
			w.log.Warn("waiting for the counter", "ack", ackID, "err", err)
		}
		return 0, false
	}
	n, err := ParseUnread(got[1])
	if err != nil {
		w.log.Warn("the relay's answer", "ack", ackID, "err", err)
		return 0, false
	}
	return n, true
}
