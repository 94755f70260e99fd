package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/ratelimit"
)

// Config configures a Queue. ConfigFromEnv fills it from the environment;
// the zero value of a field means its default.
type Config struct {
	// Prefix starts every key and stream name (JOB_PREFIX, default
	// $REDIS_PREFIX + "jobs:").
	Prefix string

	// TTL is how long a finished job's record stays readable (JOB_TTL).
	TTL time.Duration
	// MaxAttempts is how many times a job is tried before it fails and
	// goes to the dead-letter stream (JOB_MAX_ATTEMPTS).
	MaxAttempts int
	// ClaimIdle is how long a job may sit with a worker that stopped
	// answering before another worker reclaims it (JOB_CLAIM_IDLE). It must
	// be longer than every function's Timeout, or a slow but living worker
	// loses its job to another.
	ClaimIdle time.Duration
	// BackoffBase and BackoffMax bound the wait before a retry: BackoffBase
	// doubled per failed attempt, at most BackoffMax, with jitter
	// (JOB_BACKOFF_BASE, JOB_BACKOFF_MAX).
	BackoffBase, BackoffMax time.Duration

	// Concurrency is how many jobs of one function a Queue runs at once
	// (JOB_CONCURRENCY); Concurrencies overrides it per function
	// (JOB_CONCURRENCIES, "send-mail=8,gen-avatar=2").
	Concurrency   int
	Concurrencies map[string]int
	// Timeout bounds one attempt (JOB_TIMEOUT); Timeouts per function
	// (JOB_TIMEOUTS, "send-mail=20s").
	Timeout  time.Duration
	Timeouts map[string]time.Duration

	// PublicFunctions may be enqueued by clients over HTTP
	// (JOB_PUBLIC_FUNCTIONS, comma-separated; default: the catalogue's
	// queueable functions, catalog.Queueable). Enqueue from Go may name
	// any function.
	PublicFunctions []string
	// Methods overrides the HTTP method a function is called with
	// (JOB_METHODS, "report=GET"); a function not listed is called with
	// its catalogue method (lib/catalog), one outside the catalogue with
	// POST. A GET function's payload becomes its query string, a POST
	// function's its JSON body.
	Methods map[string]string

	MaxPayloadBytes int64 // JOB_MAX_PAYLOAD_BYTES: a client's payload, larger is 413
	MaxResultBytes  int   // JOB_MAX_RESULT_BYTES: a larger answer fails the job

	// Consumer names this Queue in the consumer group (JOB_CONSUMER,
	// default host-pid-random). Two running Queues must not share one.
	Consumer string

	// Notify, when set, is called on every status change of a job with its
	// owner and an Event; gateway-ws sends it as a `job` event on the
	// owner's user:<id> channel. It runs on the worker's goroutine, under
	// a short deadline.
	Notify func(ctx context.Context, userID int64, payload any)

	// Limiter enforces Quota, the per-user quota on enqueues over HTTP
	// (a client past it gets 429 rate_limited); nil enforces none.
	Limiter *ratelimit.Limiter
	Quota   ratelimit.Limit

	Log *slog.Logger
}

// Defaults.
const (
	DefaultTTL             = 24 * time.Hour
	DefaultMaxAttempts     = 5
	DefaultClaimIdle       = time.Minute
	DefaultBackoffBase     = time.Second
	DefaultBackoffMax      = time.Minute
	DefaultConcurrency     = 4
	DefaultTimeout         = 30 * time.Second
	DefaultMaxPayloadBytes = 64 << 10
	DefaultMaxResultBytes  = 1 << 20
)

// ConfigFromEnv reads a Config from the environment (names above).
func ConfigFromEnv() (Config, error) {
	c := Config{
		Prefix:   config.Env("JOB_PREFIX", config.Env("REDIS_PREFIX", "tidings:")+"jobs:"),
		Consumer: os.Getenv("JOB_CONSUMER"),
	}
	var err error
	durations := []struct {
		key string
		dst *time.Duration
		def time.Duration
	}{
		{"JOB_TTL", &c.TTL, DefaultTTL},
		{"JOB_CLAIM_IDLE", &c.ClaimIdle, DefaultClaimIdle},
		{"JOB_BACKOFF_BASE", &c.BackoffBase, DefaultBackoffBase},
		{"JOB_BACKOFF_MAX", &c.BackoffMax, DefaultBackoffMax},
		{"JOB_TIMEOUT", &c.Timeout, DefaultTimeout},
	}
	for _, d := range durations {
		if *d.dst, err = config.Duration(d.key, d.def); err != nil {
			return c, err
		}
	}
	ints := []struct {
		key string
		set func(int64)
		def int64
	}{
		{"JOB_MAX_ATTEMPTS", func(n int64) { c.MaxAttempts = int(n) }, DefaultMaxAttempts},
		{"JOB_CONCURRENCY", func(n int64) { c.Concurrency = int(n) }, DefaultConcurrency},
		{"JOB_MAX_PAYLOAD_BYTES", func(n int64) { c.MaxPayloadBytes = n }, DefaultMaxPayloadBytes},
		{"JOB_MAX_RESULT_BYTES", func(n int64) { c.MaxResultBytes = int(n) }, DefaultMaxResultBytes},
	}
	for _, i := range ints {
		n, err := config.Int64(i.key, i.def)
		if err != nil {
			return c, err
		}
		i.set(n)
	}
	concurrencies, err := config.Map("JOB_CONCURRENCIES")
	if err != nil {
		return c, err
	}
	c.Concurrencies = map[string]int{}
	for name, v := range concurrencies {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return c, fmt.Errorf("$JOB_CONCURRENCIES %s: not a positive count: %q", name, v)
		}
		c.Concurrencies[name] = n
	}
	timeouts, err := config.Map("JOB_TIMEOUTS")
	if err != nil {
		return c, err
	}
	c.Timeouts = map[string]time.Duration{}
	for name, v := range timeouts {
		if c.Timeouts[name], err = config.ParseDuration(v); err != nil {
			return c, fmt.Errorf("$JOB_TIMEOUTS %s: %w", name, err)
		}
	}
	methods, err := config.Map("JOB_METHODS")
	if err != nil {
		return c, err
	}
	c.Methods = map[string]string{}
	for name, m := range methods {
		c.Methods[name] = strings.ToUpper(m)
	}
	for name := range strings.SplitSeq(config.Env("JOB_PUBLIC_FUNCTIONS", ""), ",") {
		if name = strings.TrimSpace(name); name != "" {
			c.PublicFunctions = append(c.PublicFunctions, name)
		}
	}
	return c, c.withDefaults().validate()
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = "tidings:jobs:"
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.ClaimIdle <= 0 {
		c.ClaimIdle = DefaultClaimIdle
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = DefaultBackoffBase
	}
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = max(DefaultBackoffMax, c.BackoffBase)
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.PublicFunctions == nil {
		c.PublicFunctions = catalog.Queueable()
	}
	if c.MaxPayloadBytes <= 0 {
		c.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if c.MaxResultBytes <= 0 {
		c.MaxResultBytes = DefaultMaxResultBytes
	}
	if c.Consumer == "" {
		host, _ := os.Hostname()
		c.Consumer = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), newID()[:8])
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	for name, n := range c.Concurrencies {
		if n <= 0 {
			return fmt.Errorf("jobs: concurrency of %s must be positive", name)
		}
	}
	for name, m := range c.Methods {
		if m != http.MethodGet && m != http.MethodPost {
			return fmt.Errorf("jobs: method of %s must be GET or POST, not %q", name, m)
		}
	}
	if c.Timeout >= c.ClaimIdle {
		return fmt.Errorf("jobs: the claim idle time (%v) must be longer than the job timeout (%v)", c.ClaimIdle, c.Timeout)
	}
	for name, t := range c.Timeouts {
		if t <= 0 || t >= c.ClaimIdle {
			return fmt.Errorf("jobs: timeout of %s (%v) must be positive and shorter than the claim idle time (%v)", name, t, c.ClaimIdle)
		}
	}
	return nil
}

func (c Config) concurrency(function string) int {
	if n, ok := c.Concurrencies[function]; ok {
		return n
	}
	return c.Concurrency
}

func (c Config) timeout(function string) time.Duration {
	if t, ok := c.Timeouts[function]; ok {
		return t
	}
	return c.Timeout
}

// method is the HTTP method function is called with.
func (c Config) method(function string) string {
	if m, ok := c.Methods[function]; ok {
		return m
	}
	if f, ok := catalog.Lookup(function); ok {
		return f.Method
	}
	return http.MethodPost
}

// public reports whether clients may enqueue function over HTTP.
func (c Config) public(function string) bool { return slices.Contains(c.PublicFunctions, function) }

// backoff is the wait before attempt n+1 after n failed attempts: base
// doubled per attempt up to the cap, then jittered into its upper half so
// that jobs failing together do not retry together.
func (c Config) backoff(attempts int, jitter func(time.Duration) time.Duration) time.Duration {
	d := c.BackoffBase
	for i := 1; i < attempts && d < c.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, c.BackoffMax)
	return d/2 + jitter(d/2+1)
}
