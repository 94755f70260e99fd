package invoke

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tidings/infra/fnhost"
	"tidings/lib/catalog"
	"tidings/lib/fn"
	"tidings/lib/logging"
)

// countingHost is a function host that counts the TCP connections made to
// it.
func countingHost(t *testing.T, fns map[string]fnhost.Function) (*httptest.Server, *atomic.Int64) {
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(fnhost.New(fns, 1024, logging.NewTo(io.Discard, "error", "test")))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &opened
}

// wave holds each call until n calls are in, then lets the n go: every
// wave of calls runs at full concurrency, however the scheduler runs them.
type wave struct {
	n    int
	mu   sync.Mutex
	in   int
	gone chan struct{}
}

func (w *wave) wait() {
	w.mu.Lock()
	if w.gone == nil {
		w.gone = make(chan struct{})
	}
	gone := w.gone
	if w.in++; w.in == w.n {
		close(gone)
		w.in, w.gone = 0, nil
	}
	w.mu.Unlock()
	<-gone
}

// Calls at a function's full concurrency reuse their connections. The
// calls come in waves, each one all of the function's slots at once and
// done before the next starts: with Go's default pool of two idle
// connections per host, each wave would find two connections open and
// dial the rest again.
func TestConcurrentCallsReuseTheirConnections(t *testing.T) {
	const inflight, waves = 8, 50
	w := &wave{n: inflight}
	srv, opened := countingHost(t, map[string]fnhost.Function{"echo": {Handler: fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
		w.wait()
		return fn.JSON(200, map[string]string{"body": string(req.Body)})
	})}})
	inv := New(Config{FaaSURL: srv.URL, InternalKey: "k", Functions: []string{"echo"},
		Default: Settings{MaxInflight: inflight}, Log: logging.NewTo(io.Discard, "error", "test")})
	for i := range waves {
		errs := make(chan error, inflight)
		for range inflight {
			go func() { errs <- inv.Call(context.Background(), "echo", map[string]int{"wave": i}, nil) }()
		}
		for range inflight {
			if err := <-errs; err != nil {
				t.Fatalf("wave %d: %v", i, err)
			}
		}
	}
	t.Logf("%d calls in waves of %d opened %d connections", waves*inflight, inflight, opened.Load())
	// One connection more than the slots: the health checker's.
	if n := opened.Load(); n > inflight+1 {
		t.Errorf("%d calls in waves of %d opened %d connections; want at most %d", waves*inflight, inflight, n, inflight+1)
	}
}

// The pool has room for every slot of every function the gateway calls:
// the catalogue's, each at its own MaxInflight, and one function a
// setting names beside them; plus the health checker's probe.
func TestMaxConnsIsEveryFunctionsSlotsAndTheHealthProbe(t *testing.T) {
	cfg := Config{Default: Settings{MaxInflight: 3}, MaxInflights: map[string]int{"login": 10},
		PerFunction: map[string]Settings{"extra": {MaxInflight: 5}}}
	want := 3*(len(catalog.Names())-1) + 10 + 5 + 1
	if got := cfg.MaxConns(); got != want {
		t.Errorf("MaxConns: %d, want %d", got, want)
	}
	if tr := cfg.Transport(); tr.MaxIdleConnsPerHost != want || tr.MaxConnsPerHost != want || tr.MaxIdleConns != want {
		t.Errorf("transport keeps %d idle (%d per host) and opens %d per host; want %d each",
			tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost, want)
	}
}

// BenchmarkCallsReuseConnections calls one function from 64 callers at
// once, each call taking a millisecond at the function (a query's worth),
// through Go's default transport and through the Invoker's own; it
// reports the connections opened per call.
func BenchmarkCallsReuseConnections(b *testing.B) {
	for _, c := range []struct {
		name   string
		client func(Config) *http.Client
	}{
		{"default-transport", func(Config) *http.Client { return &http.Client{} }},
		{"sized-transport", func(cfg Config) *http.Client { return &http.Client{Transport: cfg.Transport()} }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var opened atomic.Int64
			srv := httptest.NewUnstartedServer(fnhost.New(map[string]fnhost.Function{"echo": {Handler: fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
				time.Sleep(time.Millisecond)
				return fn.JSON(200, map[string]bool{})
			})}}, 1024, logging.NewTo(io.Discard, "error", "test")))
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					opened.Add(1)
				}
			}
			srv.Start()
			defer srv.Close()
			cfg := Config{FaaSURL: srv.URL, InternalKey: "k", Default: Settings{MaxInflight: 64}, Log: logging.NewTo(io.Discard, "error", "test")}
			cfg.Client = c.client(cfg)
			inv := New(cfg)
			b.SetParallelism(64 / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := inv.Call(context.Background(), "echo", nil, nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(opened.Load())/float64(b.N), "conns/call")
		})
	}
}
