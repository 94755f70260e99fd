// Package ratelimit is tidings' one throttling mechanism: the login
// throttles and the per-user quotas (topics, publishes, job enqueues), each
// a GCRA limit kept in Redis by github.com/go-redis/redis_rate, so every
// replica of every function and of gateway-ws counts against the same
// budget. A refusal is Exceeded, answered as 429 "rate_limited" with a
// Retry-After header.
//
// Redis being unreachable lets the call through (fail open: a throttle must
// not turn a Redis outage into an outage of login or publishing) unless the
// limit says FailClosed, then it is ErrUnavailable.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/logging"
)

// Limit is one named throttle: its rate and what happens while Redis is
// unreachable.
type Limit struct {
	Name       string      // part of the Redis key: one budget per name and key
	Rate       config.Rate // the zero Rate is off
	FailClosed bool        // refuse (ErrUnavailable) rather than allow while Redis is unreachable
}

// LoginPerAccount is the login throttle per account (its email), spent by
// wrong passwords.
func LoginPerAccount(l config.Limits) Limit {
	return Limit{Name: "login-account", Rate: l.LoginPerAccount, FailClosed: l.LoginFailClosed}
}

// LoginPerAddress is the login throttle per client address, spent by wrong
// passwords.
func LoginPerAddress(l config.Limits) Limit {
	return Limit{Name: "login-address", Rate: l.LoginPerAddress, FailClosed: l.LoginFailClosed}
}

// Topics is the per-user quota on topic creation.
func Topics(l config.Limits) Limit { return Limit{Name: "topics", Rate: l.TopicsPerUser} }

// Publishes is the per-user quota on publishes, over HTTP and socket alike.
func Publishes(l config.Limits) Limit { return Limit{Name: "publishes", Rate: l.PublishesPerUser} }

// Jobs is the per-user quota on job enqueues.
func Jobs(l config.Limits) Limit { return Limit{Name: "jobs", Rate: l.JobsPerUser} }

// ErrUnavailable is a FailClosed limit's answer while Redis is unreachable.
var ErrUnavailable = errors.New("rate limiter unavailable")

// Unavailable is ErrUnavailable in the public error shape.
func Unavailable() *fn.Error {
	return &fn.Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
		Message: "the rate limiter cannot be reached; retry later"}
}

// Exceeded is a refusal: the limit's budget for this key is spent until
// RetryAfter has passed.
type Exceeded struct {
	Limit      string
	RetryAfter time.Duration
}

func (e *Exceeded) Error() string {
	return fmt.Sprintf("rate limit %s exceeded; retry after %s", e.Limit, e.RetryAfter)
}

// Seconds is RetryAfter rounded up to whole seconds, at least 1: the value
// of the Retry-After header and of a socket reply's retry_after.
func (e *Exceeded) Seconds() int {
	return max(1, int(math.Ceil(e.RetryAfter.Seconds())))
}

// Response is the 429 answer: the JSON error shape, code "rate_limited",
// and Retry-After.
func (e *Exceeded) Response() fn.Response {
	resp := fn.ErrorResponse(&fn.Error{Status: http.StatusTooManyRequests, Code: "rate_limited",
		Message: fmt.Sprintf("too many requests; retry in %d s", e.Seconds())})
	resp.Header.Set("Retry-After", strconv.Itoa(e.Seconds()))
	return resp
}

// Answer maps what Check or Take returned to a function's answer: ok is
// false when the caller must return resp (429 or 503) and stop.
func Answer(err error) (resp fn.Response, ok bool) {
	var exceeded *Exceeded
	switch {
	case err == nil:
		return fn.Response{}, true
	case errors.As(err, &exceeded):
		return exceeded.Response(), false
	default:
		return fn.ErrorResponse(Unavailable()), false
	}
}

// Refuse writes Answer's refusal to w, for HTTP servers: it reports
// whether it did, and then the caller stops.
func Refuse(w http.ResponseWriter, err error) bool {
	resp, ok := Answer(err)
	if !ok {
		fn.WriteResponse(w, resp)
	}
	return !ok
}

// Limiter checks and spends budgets in Redis. The nil *Limiter, and one
// without a Redis client, limits nothing.
type Limiter struct {
	rl      *redis_rate.Limiter
	prefix  string
	timeout time.Duration
	log     *slog.Logger
}

// New returns a Limiter on rdb whose keys start with prefix (redis_rate
// puts its own "rate:" in front). timeout bounds each Redis call (0: 500ms).
func New(rdb redis.UniversalClient, prefix string, timeout time.Duration, log *slog.Logger) *Limiter {
	if rdb == nil {
		return nil
	}
	if timeout <= 0 {
		timeout = 500 * time.Millisecond
	}
	return &Limiter{rl: redis_rate.NewLimiter(rdb), prefix: prefix, timeout: timeout, log: logging.Or(log)}
}

// Take spends one unit of limit's budget for key: nil when it was there,
// *Exceeded when it was spent already.
func (l *Limiter) Take(ctx context.Context, limit Limit, key string) error {
	return l.run(ctx, limit, key, func(ctx context.Context, k string, rl redis_rate.Limit) (*redis_rate.Result, error) {
		return l.rl.Allow(ctx, k, rl)
	})
}

// Check reports, spending nothing, whether limit's budget for key is spent:
// nil when one more unit is there, *Exceeded otherwise. Login checks before
// it looks at the password and spends only on a wrong one.
func (l *Limiter) Check(ctx context.Context, limit Limit, key string) error {
	return l.run(ctx, limit, key, func(ctx context.Context, k string, rl redis_rate.Limit) (*redis_rate.Result, error) {
		// AllowAtMost with n=0 spends nothing, and its RetryAfter is
		// positive exactly when less than one unit is left.
		res, err := l.rl.AllowAtMost(ctx, k, rl, 0)
		if err == nil && res.RetryAfter <= 0 {
			res.Allowed = 1
		}
		return res, err
	})
}

type call func(ctx context.Context, key string, rl redis_rate.Limit) (*redis_rate.Result, error)

func (l *Limiter) run(ctx context.Context, limit Limit, key string, do call) error {
	if l == nil || limit.Rate.Off() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	rl := redis_rate.Limit{Rate: limit.Rate.Count, Burst: limit.Rate.Count, Period: limit.Rate.Per}
	res, err := do(ctx, l.key(limit, key), rl)
	if err != nil {
		if limit.FailClosed {
			return fmt.Errorf("%w: %s: %v", ErrUnavailable, limit.Name, err)
		}
		l.log.Warn("rate limiter unreachable; letting the request through", "limit", limit.Name, "err", err)
		return nil
	}
	if res.Allowed > 0 {
		return nil
	}
	return &Exceeded{Limit: limit.Name, RetryAfter: res.RetryAfter}
}

// key hashes the caller's key (an email, an address, a user id), so keys
// stay short and hold no personal data.
func (l *Limiter) key(limit Limit, key string) string {
	sum := sha256.Sum256([]byte(key))
	return l.prefix + "ratelimit:" + limit.Name + ":" + hex.EncodeToString(sum[:16])
}

// ClientAddress is the client address the login throttle counts against:
// the first X-Forwarded-For entry, which gateway-ws's pass-through sets
// from the peer it sees (a FaaS gateway behind it may append its own), or
// "" when there is none or it is not an IP address.
func ClientAddress(h http.Header) string {
	first, _, _ := strings.Cut(h.Get("X-Forwarded-For"), ",")
	addr, err := netip.ParseAddr(strings.TrimSpace(first))
	if err != nil {
		return ""
	}
	return addr.Unmap().String()
}
