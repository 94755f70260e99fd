// Package invoke is how gateway-ws calls tidings functions through the FaaS
// gateway: every call goes through the function's circuit breaker, under
// its timeout and concurrency limit, carrying the internal key. A health
// checker marks functions down after repeated failed checks.
package invoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"tidings/lib/auth"
	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/logging"
	"tidings/lib/metrics"
)

// Settings are one function's call limits; DefaultSettings holds the
// defaults, which also fill a zero field of a function's Settings.
type Settings struct {
	Timeout         time.Duration `env:"FUNCTION_TIMEOUT"`      // one call, all of it
	MaxInflight     int           `env:"FUNCTION_MAX_INFLIGHT"` // calls at once from this gateway
	BreakerFailures uint32        `env:"BREAKER_FAILURES"`      // consecutive failures that open the breaker
	BreakerOpenFor  time.Duration `env:"BREAKER_OPEN_FOR"`      // how long it stays open before a trial call
}

// DefaultSettings is Settings' defaults.
func DefaultSettings() Settings {
	return Settings{Timeout: 10 * time.Second, MaxInflight: 64, BreakerFailures: 5, BreakerOpenFor: 5 * time.Second}
}

// Config configures an Invoker; DefaultConfig holds the defaults.
type Config struct {
	FaaSURL     string // functions are at FaaSURL/function/<name>
	InternalKey string
	BasicAuth   string `env:"FAAS_BASIC_AUTH"` // "user:password" for the FaaS gateway's /system API, if it wants one
	Default     Settings
	PerFunction map[string]Settings // overrides, by function name (the dev stack's from stack.yml)
	// Timeouts and MaxInflights override one field of a function's
	// settings, over PerFunction: "gen-avatar=30s", "login=8".
	Timeouts     map[string]time.Duration `env:"FUNCTION_TIMEOUTS"`
	MaxInflights map[string]int           `env:"FUNCTION_MAX_INFLIGHTS"`

	HealthInterval time.Duration `env:"HEALTH_INTERVAL"` // 0: no health checks
	HealthFailures int           `env:"HEALTH_FAILURES"` // failed checks in a row that mark a function down

	// Functions are the functions called through this Invoker (nil: the
	// catalogue's, lib/catalog); their MaxInflight, summed, sizes the
	// connection pool (Transport).
	Functions []string
	Client    *http.Client // nil: one on Transport
	Log       *slog.Logger
	Metrics   *metrics.Calls // nil: not exported
}

// DefaultConfig is Config's defaults.
func DefaultConfig() Config {
	return Config{Default: DefaultSettings(), HealthInterval: 5 * time.Second, HealthFailures: 3}
}

// settings are the named function's: PerFunction's or Default, then
// Timeouts and MaxInflights over them, then DefaultSettings for every
// field still zero (or negative).
func (c Config) settings(name string) Settings {
	s, ok := c.PerFunction[name]
	if !ok {
		s = c.Default
	}
	if t, ok := c.Timeouts[name]; ok {
		s.Timeout = t
	}
	if n, ok := c.MaxInflights[name]; ok {
		s.MaxInflight = n
	}
	def := DefaultSettings()
	config.OrDefault(&s.Timeout, def.Timeout)
	config.OrDefault(&s.MaxInflight, def.MaxInflight)
	config.OrDefault(&s.BreakerFailures, def.BreakerFailures)
	config.OrDefault(&s.BreakerOpenFor, def.BreakerOpenFor)
	return s
}

// MaxConns is how many calls this Invoker can have in flight to the FaaS
// gateway at once, all of them to its one host: every function's
// MaxInflight (Functions', and any other a setting names), plus the
// health checker's one probe at a time.
func (c Config) MaxConns() int {
	names := c.Functions
	if names == nil {
		names = catalog.Names()
	}
	seen := map[string]bool{}
	n := 1
	count := func(name string) {
		if !seen[name] {
			seen[name] = true
			n += c.settings(name).MaxInflight
		}
	}
	for _, name := range names {
		count(name)
	}
	for name := range c.PerFunction {
		count(name)
	}
	for name := range c.MaxInflights {
		count(name)
	}
	return n
}

// Transport is the HTTP transport to the FaaS gateway: Go's default, with
// room for MaxConns connections to it. Go keeps only two idle connections
// per host by default, so at a few hundred calls a second most calls
// closed their connection and the next dialled a new one (thousands of
// sockets left in TIME_WAIT); with every call's connection kept, a call
// dials only when more calls are in flight than ever before. The slots
// already bound the calls in flight; MaxConnsPerHost makes the same bound
// hold for connections, so the gateway never opens more than it can use.
func (c Config) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	n := c.MaxConns()
	t.MaxIdleConns, t.MaxIdleConnsPerHost, t.MaxConnsPerHost = n, n, n
	return t
}

// Errors a call fails with before reaching the function.
var (
	ErrOpen = errors.New("circuit open: the function failed repeatedly and is not being called for now")
	ErrBusy = errors.New("too many calls in flight to the function")
	ErrDown = errors.New("the function is marked down by health checks")
	// ErrCallerDone is a call whose caller's own context ended (its
	// deadline passed, it was cancelled) before the function answered:
	// the caller's doing, never counted against the function.
	ErrCallerDone = errors.New("the caller's context ended before the function answered")
)

// CallError is a function's answer outside 2xx; Failed and Retryable
// tell what it means.
type CallError struct {
	Function string
	Status   int
	Code     string
	Message  string
}

func (e *CallError) Error() string {
	return fmt.Sprintf("%s answered %d %s: %s", e.Function, e.Status, e.Code, e.Message)
}

// Invoker calls functions.
type Invoker struct {
	cfg    Config
	client *http.Client
	log    *slog.Logger

	mu  sync.Mutex
	fns map[string]*function
}

// function is one function's breaker, slots and health.
type function struct {
	name     string
	settings Settings
	breaker  *gobreaker.CircuitBreaker[*Answer]
	slots    chan struct{}

	mu       sync.Mutex
	down     bool
	failures int
}

// New returns an Invoker.
func New(cfg Config) *Invoker {
	client := cfg.Client
	if client == nil {
		client = &http.Client{Transport: cfg.Transport()}
	}
	log := logging.Or(cfg.Log)
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewCalls(prometheus.NewRegistry())
	}
	return &Invoker{cfg: cfg, client: client, log: log, fns: map[string]*function{}}
}

func (inv *Invoker) function(name string) *function {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if f, ok := inv.fns[name]; ok {
		return f
	}
	s := inv.cfg.settings(name)
	f := &function{name: name, settings: s, slots: make(chan struct{}, s.MaxInflight)}
	f.breaker = gobreaker.NewCircuitBreaker[*Answer](gobreaker.Settings{
		Name:         name,
		MaxRequests:  1,
		Timeout:      s.BreakerOpenFor,
		ReadyToTrip:  func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= s.BreakerFailures },
		IsSuccessful: func(err error) bool { return !Failed(err) },
		// A caller giving up says nothing of the function, either way.
		IsExcluded: func(err error) bool { return judge(err) == callerGaveUp },
		OnStateChange: func(name string, from, to gobreaker.State) {
			inv.log.Warn("circuit breaker changed state", "function", name, "from", from.String(), "to", to.String())
		},
	})
	inv.fns[name] = f
	return f
}

// Call POSTs body (JSON-encoded) to the named function and decodes a 2xx
// answer into out (when out is not nil). Non-2xx answers are *CallError.
func (inv *Invoker) Call(ctx context.Context, name string, body, out any) error {
	payload, err := json.Marshal(body)
	if err != nil {
		return err
	}
	answer, err := inv.Do(ctx, name, http.MethodPost, "", payload)
	if err != nil {
		return err
	}
	if out != nil {
		if err := json.Unmarshal(answer.Body, out); err != nil {
			return fmt.Errorf("%s: decode answer: %w", name, err)
		}
	}
	return nil
}

// Request is a call to a function. Internal calls carry the internal key;
// calls passed through for a client never do.
type Request struct {
	Method   string
	Query    string
	Header   http.Header
	Body     []byte
	Internal bool
}

// Answer is what a function answered.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do makes an internal call with any method, query string and body. A
// non-2xx answer is a *CallError.
func (inv *Invoker) Do(ctx context.Context, name, method, query string, body []byte) (*Answer, error) {
	header := http.Header{}
	if len(body) > 0 {
		header.Set("Content-Type", "application/json")
	}
	answer, err := inv.Send(ctx, name, Request{Method: method, Query: query, Header: header, Body: body, Internal: true})
	if err != nil {
		return nil, err
	}
	if answer.Status/100 != 2 {
		return nil, callError(name, answer)
	}
	return answer, nil
}

// Send calls the named function through its breaker, slots and timeout and
// returns whatever it answered; the error is for calls that got no answer.
// Failed judges each call for the breaker.
func (inv *Invoker) Send(ctx context.Context, name string, req Request) (answer *Answer, err error) {
	start := time.Now()
	defer func() {
		inv.cfg.Metrics.Seconds.WithLabelValues(name, callStatus(answer, err)).Observe(time.Since(start).Seconds())
	}()
	f := inv.function(name)
	if f.isDown() {
		return nil, fmt.Errorf("%s: %w", name, ErrDown)
	}
	caller := ctx
	if caller.Err() != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, ErrCallerDone, context.Cause(caller))
	}
	// The timeout covers waiting for a slot too: a caller never waits
	// longer than the function may take.
	ctx, cancel := context.WithTimeout(ctx, f.settings.Timeout)
	defer cancel()
	select {
	case f.slots <- struct{}{}:
		defer func() { <-f.slots }()
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", name, ErrBusy)
	}
	_, err = f.breaker.Execute(func() (*Answer, error) {
		var err error
		answer, err = inv.send(ctx, f, req)
		if err != nil && caller.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ErrCallerDone, err)
		}
		if err == nil && answer.Status/100 != 2 {
			return answer, callError(f.name, answer) // for the breaker to judge; the caller still gets the answer
		}
		return answer, err
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return nil, fmt.Errorf("%s: %w", name, ErrOpen)
	}
	if answer != nil {
		return answer, nil
	}
	return nil, err
}

func (inv *Invoker) send(ctx context.Context, f *function, r Request) (*Answer, error) {
	target := inv.url("/function/" + f.name)
	if r.Query != "" {
		target += "?" + r.Query
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, target, bytes.NewReader(r.Body))
	if err != nil {
		return nil, err
	}
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	req.Header.Del(auth.InternalKeyHeader)
	if r.Internal {
		req.Header.Set(auth.InternalKeyHeader, inv.cfg.InternalKey)
	}
	resp, err := inv.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", f.name, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s's answer: %w", f.name, err)
	}
	return &Answer{Status: resp.StatusCode, Header: resp.Header, Body: raw}, nil
}

// callError reads a non-2xx answer in the contract's error shape.
func callError(name string, a *Answer) *CallError {
	ce := &CallError{Function: name, Status: a.Status}
	var e struct {
		Error struct{ Code, Message string }
	}
	if json.Unmarshal(a.Body, &e) == nil && e.Error.Code != "" {
		ce.Code, ce.Message = e.Error.Code, e.Error.Message
	} else {
		ce.Code, ce.Message = "unexpected", strings.TrimSpace(string(a.Body))
	}
	return ce
}

func (inv *Invoker) url(path string) string { return strings.TrimRight(inv.cfg.FaaSURL, "/") + path }

// Status is one function's state as the gateway sees it.
type Status struct {
	Name     string `json:"name"`
	Up       bool   `json:"up"`
	Breaker  string `json:"breaker"`
	Inflight int    `json:"inflight"`
}

// Statuses lists every function called or checked so far, by name.
func (inv *Invoker) Statuses() []Status {
	inv.mu.Lock()
	fns := make([]*function, 0, len(inv.fns))
	for _, f := range inv.fns {
		fns = append(fns, f)
	}
	inv.mu.Unlock()
	out := make([]Status, 0, len(fns))
	for _, f := range fns {
		out = append(out, Status{Name: f.name, Up: !f.isDown(), Breaker: f.breaker.State().String(), Inflight: len(f.slots)})
	}
	sortStatuses(out)
	return out
}

func (f *function) isDown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down
}
