package invoke

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"tidings/infra/fnhost"
	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/logging"
)

func host(t *testing.T, fns map[string]fnhost.Function) *httptest.Server {
	srv := httptest.NewServer(fnhost.New(fns, 1024, logging.NewTo(io.Discard, "error", "test")))
	t.Cleanup(srv.Close)
	return srv
}

func invoker(url string, s Settings) *Invoker {
	return New(Config{FaaSURL: url, InternalKey: "k", Default: s, HealthFailures: 2, Log: logging.NewTo(io.Discard, "error", "test")})
}

func TestCallSendsTheInternalKeyAndDecodesTheAnswer(t *testing.T) {
	srv := host(t, map[string]fnhost.Function{"echo": {Handler: fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
		return fn.JSON(200, map[string]string{"key": req.Header.Get(auth.InternalKeyHeader), "body": string(req.Body)})
	})}})
	var out map[string]string
	if err := invoker(srv.URL, Settings{Timeout: time.Second}).Call(context.Background(), "echo", map[string]int{"a": 1}, &out); err != nil {
		t.Fatal(err)
	}
	if out["key"] != "k" || out["body"] != `{"a":1}` {
		t.Errorf("function saw %v", out)
	}
}

func TestRefusalsDoNotOpenTheBreakerButFailuresDo(t *testing.T) {
	srv := host(t, map[string]fnhost.Function{
		"refuses": {Handler: fn.HandlerFunc(func(fn.Request) (fn.Response, error) { return fn.Response{}, fn.Conflict("no") })},
		"fails":   {Handler: fn.HandlerFunc(func(fn.Request) (fn.Response, error) { return fn.Response{}, errors.New("boom") })},
	})
	inv := invoker(srv.URL, Settings{Timeout: time.Second, BreakerFailures: 2, BreakerOpenFor: time.Hour})
	for i := 0; i < 5; i++ {
		var ce *CallError
		if err := inv.Call(context.Background(), "refuses", nil, nil); !errors.As(err, &ce) || ce.Status != 409 || ce.Code != "conflict" {
			t.Fatalf("refusal #%d: %v, want the 409 CallError", i+1, err)
		}
	}
	for i := 0; i < 2; i++ {
		_ = inv.Call(context.Background(), "fails", nil, nil)
	}
	if err := inv.Call(context.Background(), "fails", nil, nil); !errors.Is(err, ErrOpen) || !NotSent(err) {
		t.Errorf("third call after two failures: %v, want ErrOpen", err)
	}
	for _, s := range inv.Statuses() {
		want := map[string]string{"refuses": "closed", "fails": "open"}[s.Name]
		if s.Breaker != want {
			t.Errorf("%s breaker %s, want %s", s.Name, s.Breaker, want)
		}
	}
}

func TestCallsBeyondMaxInflightWaitThenGiveUp(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	srv := host(t, map[string]fnhost.Function{"held": {Handler: fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
		entered <- struct{}{}
		<-release
		return fn.JSON(200, map[string]bool{})
	})}})
	inv := invoker(srv.URL, Settings{Timeout: 10 * time.Second, MaxInflight: 1})
	done := make(chan error, 1)
	go func() { done <- inv.Call(context.Background(), "held", nil, nil) }()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := inv.Call(ctx, "held", nil, nil); !errors.Is(err, ErrBusy) {
		t.Errorf("call over the limit: %v, want ErrBusy", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("call within the limit: %v", err)
	}
}

func TestHealthChecksMarkAFunctionDownAndUpAgain(t *testing.T) {
	ok := fn.HandlerFunc(func(fn.Request) (fn.Response, error) { return fn.JSON(200, map[string]bool{}) })
	srv := host(t, map[string]fnhost.Function{"f": {Handler: ok}})
	inv := invoker(srv.URL, Settings{Timeout: time.Second})
	ctx := context.Background()
	if !inv.CheckHealth(ctx, "f") {
		t.Fatal("a served function failed its health check")
	}
	if inv.CheckHealth(ctx, "missing") {
		t.Error("a function the host does not serve passed its health check")
	}
	srv.Close() // fault: the function's host goes away
	inv.CheckHealth(ctx, "f")
	if err := inv.Call(ctx, "f", nil, nil); errors.Is(err, ErrDown) {
		t.Error("marked down after one failed check; the limit is two")
	}
	inv.CheckHealth(ctx, "f")
	if err := inv.Call(ctx, "f", nil, nil); !errors.Is(err, ErrDown) {
		t.Errorf("after two failed checks: %v, want ErrDown", err)
	}
	back := httptest.NewServer(fnhost.New(map[string]fnhost.Function{"f": {Handler: ok}}, 1024, logging.NewTo(io.Discard, "error", "t")))
	defer back.Close()
	inv.cfg.FaaSURL = back.URL
	if !inv.CheckHealth(ctx, "f") || inv.Call(ctx, "f", nil, nil) != nil {
		t.Error("the function stayed down after a passing check")
	}
}
