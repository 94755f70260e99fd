package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/logging"
	"tidings/lib/ratelimit"
)

// Config configures a Queue. DefaultConfig holds the defaults, which New
// also gives a zero field.
type Config struct {
	// Prefix starts every key and stream name (JOB_PREFIX), before the
	// queue's hash tag {jobs}. It is required and holds no braces, which
	// would make a hash tag of their own on a Redis Cluster; gateway-ws
	// makes it $REDIS_PREFIX + "jobs:" when unset.
	Prefix string `env:"JOB_PREFIX"`

	// TTL is how long a finished job's record stays readable.
	TTL time.Duration `env:"JOB_TTL"`
	// MaxAttempts is how many times a job is tried before it fails and
	// goes to the dead-letter stream.
	MaxAttempts int `env:"JOB_MAX_ATTEMPTS"`
	// ClaimIdle is how long a job may sit with a worker that stopped
	// answering before another worker reclaims it. It must be longer than
	// every function's Timeout, or a slow but living worker loses its job
	// to another.
	ClaimIdle time.Duration `env:"JOB_CLAIM_IDLE"`
	// BackoffBase and BackoffMax bound the wait before a retry: BackoffBase
	// doubled per failed attempt, at most BackoffMax, with jitter.
	BackoffBase time.Duration `env:"JOB_BACKOFF_BASE"`
	BackoffMax  time.Duration `env:"JOB_BACKOFF_MAX"`

	// Concurrency is how many jobs of one function a Queue runs at once;
	// Concurrencies overrides it per function ("send-mail=8,gen-avatar=2").
	Concurrency   int            `env:"JOB_CONCURRENCY"`
	Concurrencies map[string]int `env:"JOB_CONCURRENCIES"`
	// Timeout bounds one attempt; Timeouts per function ("send-mail=20s").
	Timeout  time.Duration            `env:"JOB_TIMEOUT"`
	Timeouts map[string]time.Duration `env:"JOB_TIMEOUTS"`

	// PublicFunctions may be enqueued by clients over HTTP
	// (comma-separated; default: the catalogue's queueable functions,
	// catalog.Queueable). Each must be a catalogue function that is not
	// Internal. Enqueue from Go may name any function.
	PublicFunctions []string `env:"JOB_PUBLIC_FUNCTIONS"`
	// Methods overrides the HTTP method a function is called with
	// ("report=GET"); a function not listed is called with its catalogue
	// method (lib/catalog), one outside the catalogue with POST. A GET
	// function's payload becomes its query string, a POST function's its
	// JSON body.
	Methods Methods `env:"JOB_METHODS"`

	MaxPayloadBytes int64 `env:"JOB_MAX_PAYLOAD_BYTES"` // a client's payload, larger is 413
	MaxResultBytes  int   `env:"JOB_MAX_RESULT_BYTES"`  // a larger answer fails the job

	// Consumer names this Queue in the consumer group; empty means
	// host-pid-random. Two running Queues must not share one.
	Consumer string `env:"JOB_CONSUMER"`

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

// DefaultConfig is Config's defaults.
func DefaultConfig() Config {
	return Config{
		TTL:             24 * time.Hour,
		MaxAttempts:     5,
		ClaimIdle:       time.Minute,
		BackoffBase:     time.Second,
		BackoffMax:      time.Minute,
		Concurrency:     4,
		Timeout:         30 * time.Second,
		PublicFunctions: catalog.Queueable(),
		MaxPayloadBytes: 64 << 10,
		MaxResultBytes:  1 << 20,
	}
}

// Methods maps a function's name to the HTTP method its jobs call it
// with.
type Methods map[string]string

// UnmarshalText reads "name=METHOD,..." (JOB_METHODS) over the methods m
// already holds, so that naming one function keeps the others' defaults.
func (m *Methods) UnmarshalText(text []byte) error {
	pairs, err := config.ParseMap(string(text))
	if err != nil {
		return fmt.Errorf("$JOB_METHODS: %w", err)
	}
	out := maps.Clone(*m)
	if out == nil {
		out = Methods{}
	}
	for name, method := range pairs {
		out[name] = strings.ToUpper(method)
	}
	*m = out
	return nil
}

// withDefaults fills the zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	def := DefaultConfig()
	config.OrDefault(&c.TTL, def.TTL)
	config.OrDefault(&c.ClaimIdle, def.ClaimIdle)
	config.OrDefault(&c.BackoffBase, def.BackoffBase)
	config.OrDefault(&c.Timeout, def.Timeout)
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = max(def.BackoffMax, c.BackoffBase)
	}
	config.OrDefault(&c.MaxAttempts, def.MaxAttempts)
	config.OrDefault(&c.Concurrency, def.Concurrency)
	if c.PublicFunctions == nil {
		c.PublicFunctions = def.PublicFunctions
	}
	if c.Methods == nil {
		c.Methods = def.Methods
	}
	config.OrDefault(&c.MaxPayloadBytes, def.MaxPayloadBytes)
	config.OrDefault(&c.MaxResultBytes, def.MaxResultBytes)
	if c.Consumer == "" {
		host, _ := os.Hostname()
		c.Consumer = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), newID()[:8])
	}
	c.Log = logging.Or(c.Log)
	return c
}

// Validate checks c as New will use it (its zero fields given their
// defaults).
func (c Config) Validate() error { return c.withDefaults().validate() }

// validate names every bad setting, each kind's entries sorted by
// function name, so the same configuration gets the same answer on every
// run whatever the maps' order.
func (c Config) validate() error {
	var bad []string
	if c.Prefix == "" {
		bad = append(bad, "a key prefix is required")
	}
	if strings.ContainsAny(c.Prefix, "{}") {
		bad = append(bad, fmt.Sprintf("the key prefix %q must not hold braces", c.Prefix))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Concurrencies)) {
		if c.Concurrencies[name] <= 0 {
			bad = append(bad, fmt.Sprintf("concurrency of %s must be positive", name))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(c.Methods)) {
		if m := c.Methods[name]; m != http.MethodGet && m != http.MethodPost {
			bad = append(bad, fmt.Sprintf("method of %s must be GET or POST, not %q", name, m))
		}
	}
	if c.Timeout >= c.ClaimIdle {
		bad = append(bad, fmt.Sprintf("the claim idle time (%v) must be longer than the job timeout (%v)", c.ClaimIdle, c.Timeout))
	}
	for _, name := range slices.Sorted(maps.Keys(c.Timeouts)) {
		if t := c.Timeouts[name]; t <= 0 || t >= c.ClaimIdle {
			bad = append(bad, fmt.Sprintf("timeout of %s (%v) must be positive and shorter than the claim idle time (%v)", name, t, c.ClaimIdle))
		}
	}
	// Clients may queue only what they may call: the queue calls every
	// job with the internal key, so an internal function made public
	// would be one a client runs as the gateway.
	for _, name := range slices.Sorted(slices.Values(c.PublicFunctions)) {
		if f, ok := catalog.Lookup(name); !ok || f.Internal {
			bad = append(bad, fmt.Sprintf("public function %s must be a catalogue function that is not internal", name))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("jobs: %s", strings.Join(bad, "; "))
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
