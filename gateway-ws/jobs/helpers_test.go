package jobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"tidings/gateway-ws/invoke"
	"tidings/gateway-ws/jobs"
	"tidings/infra/fnhost"
	"tidings/lib/auth"
	"tidings/lib/testenv"
)

const internalKey = "jobs-test-internal-key"

// quietLog keeps the workers' expected warnings (retries, outages) out of
// the test output unless -v.
func quietLog() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// host serves fns the way the FaaS gateway does, and returns an Invoker
// calling them with the internal key.
func host(t *testing.T, fns map[string]fnhost.Function) *invoke.Invoker {
	t.Helper()
	srv := httptest.NewServer(fnhost.New(fns, 1<<20, quietLog()))
	t.Cleanup(srv.Close)
	return invoke.New(invoke.Config{
		FaaSURL:     srv.URL,
		InternalKey: internalKey,
		Default:     invoke.Settings{Timeout: 10 * time.Second, MaxInflight: 64, BreakerFailures: 100, BreakerOpenFor: time.Second},
		Log:         quietLog(),
	})
}

// events records what Notify was told.
type events struct {
	mu   sync.Mutex
	list []jobs.Event
}

func (e *events) notify(_ context.Context, _ int64, payload any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, payload.(jobs.Event))
}

// of returns the statuses notified for job id, in order.
func (e *events) of(id string) []jobs.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []jobs.Event
	for _, ev := range e.list {
		if ev.ID == id {
			out = append(out, ev)
		}
	}
	return out
}

func statuses(evs []jobs.Event) []jobs.Status {
	out := make([]jobs.Status, len(evs))
	for i, ev := range evs {
		out[i] = ev.Status
	}
	return out
}

// testConfig is a Config with short times, so tests finish quickly.
func testConfig(prefix string, ev *events) jobs.Config {
	return jobs.Config{
		Prefix:      prefix,
		TTL:         time.Minute,
		MaxAttempts: 3,
		ClaimIdle:   3 * time.Second,
		BackoffBase: 20 * time.Millisecond,
		BackoffMax:  100 * time.Millisecond,
		Concurrency: 4,
		Timeout:     2 * time.Second,
		Notify:      ev.notify,
		Log:         quietLog(),
	}
}

// run runs q's workers until the test ends, or until the returned stop is
// called (which waits for Run to return).
func run(t *testing.T, q *jobs.Queue) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("Run did not return after its context was cancelled")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// api is a client of the job API.
type api struct {
	t   *testing.T
	url string
}

func serve(t *testing.T, q *jobs.Queue) *api {
	srv := httptest.NewServer(q.Handler())
	t.Cleanup(srv.Close)
	return &api{t: t, url: srv.URL}
}

func (a *api) do(method, path, token, body string) (int, map[string]any, http.Header) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.url+path, bytes.NewBufferString(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		a.t.Fatalf("%s %s answered %d with non-JSON %q", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out, resp.Header
}

func (a *api) job(id, token string) (int, map[string]any) {
	status, out, _ := a.do(http.MethodGet, "/api/jobs/"+id, token, "")
	return status, out
}

// waitStatus polls GET until the job has status want, and returns it.
func (a *api) waitStatus(id, token string, want jobs.Status) map[string]any {
	a.t.Helper()
	var last map[string]any
	testenv.Eventually(a.t, "job "+id+" to become "+string(want), 400, func() bool {
		_, last = a.job(id, token)
		return last["status"] == string(want)
	})
	return last
}

func user(t *testing.T, id int64) string {
	t.Helper()
	token, _, err := auth.NewTokens(testenv.JWTKey, time.Hour).Issue(id)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func tokens() *auth.Tokens { return auth.NewTokens(testenv.JWTKey, time.Hour) }

func errorCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}
