package invoke

import (
	"context"
	"errors"
	"fmt"
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

// TestOnlyFunctionAndPlatformFailuresCountAgainstTheBreaker calls, in a row,
// far more than BreakerFailures times per answer the function gives: the
// breaker must stay closed for every 4xx (429 included), a 3xx and the 5xx
// other than 500, 502, 503 and 504, and open for each kind of real failure.
func TestOnlyFunctionAndPlatformFailuresCountAgainstTheBreaker(t *testing.T) {
	answer := func(status int) fn.Handler {
		return fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
			return fn.ErrorResponse(fn.Errorf(status, "x", "answer %d", status)), nil
		})
	}
	fns := map[string]fnhost.Function{}
	for _, status := range []int{302, 400, 401, 403, 404, 405, 409, 413, 429, 500, 501, 502, 503, 504, 505, 507} {
		fns[fmt.Sprint(status)] = fnhost.Function{Handler: answer(status)}
	}
	fns["slow"] = fnhost.Function{Handler: fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
		<-req.Context().Done()
		return fn.Response{}, req.Context().Err()
	})}
	srv := host(t, fns)
	inv := invoker(srv.URL, Settings{Timeout: 200 * time.Millisecond, BreakerFailures: 3, BreakerOpenFor: time.Hour})
	for name := range fns {
		for range 6 {
			_ = inv.Call(context.Background(), name, nil, nil)
		}
	}
	// A function whose host refuses connections.
	refused := New(Config{FaaSURL: "http://127.0.0.1:1", Default: Settings{Timeout: time.Second, BreakerFailures: 3, BreakerOpenFor: time.Hour}, Log: logging.NewTo(io.Discard, "error", "t")})
	for range 4 {
		_ = refused.Call(context.Background(), "gone", nil, nil)
	}
	got := map[string]string{}
	for _, s := range append(inv.Statuses(), refused.Statuses()...) {
		got[s.Name] = s.Breaker
	}
	for name := range fns {
		want := "closed"
		if name == "500" || name == "502" || name == "503" || name == "504" || name == "slow" {
			want = "open"
		}
		if got[name] != want {
			t.Errorf("breaker of a function answering %s six times: %s, want %s", name, got[name], want)
		}
	}
	if got["gone"] != "open" {
		t.Errorf("breaker of a function whose connections are refused: %s, want open", got["gone"])
	}
}

// TestACallerWhoseContextEndedIsNotCountedNorCalledBusy calls with contexts
// that already ended, many more times than BreakerFailures: each gets
// ErrCallerDone (not ErrBusy), and the function's breaker stays closed.
func TestACallerWhoseContextEndedIsNotCountedNorCalledBusy(t *testing.T) {
	srv := host(t, map[string]fnhost.Function{"f": {Handler: fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
		return fn.JSON(200, map[string]bool{})
	})}})
	inv := invoker(srv.URL, Settings{Timeout: time.Second, BreakerFailures: 2, BreakerOpenFor: time.Hour})
	expired, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	for i := range 10 {
		for _, ctx := range []context.Context{expired, cancelled} {
			err := inv.Call(ctx, "f", nil, nil)
			if !errors.Is(err, ErrCallerDone) || errors.Is(err, ErrBusy) {
				t.Fatalf("call #%d with an ended context: %v, want ErrCallerDone", i+1, err)
			}
		}
	}
	if err := inv.Call(context.Background(), "f", nil, nil); err != nil {
		t.Errorf("a live caller after 20 ended ones: %v, want success (breaker closed)", err)
	}
}

// A zero field of a function's Settings takes DefaultSettings' value, each
// on its own: an Invoker built with no Settings at all calls functions
// under the default timeout instead of failing every call at once.
func TestZeroSettingsTakeTheDefaults(t *testing.T) {
	srv := host(t, map[string]fnhost.Function{"f": {Handler: fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
		return fn.JSON(200, map[string]bool{})
	})}})
	if err := New(Config{FaaSURL: srv.URL, InternalKey: "k"}).Call(context.Background(), "f", nil, nil); err != nil {
		t.Errorf("call with no Settings configured: %v", err)
	}
	def := DefaultSettings()
	if got := (Config{}).settings("f"); got != def {
		t.Errorf("settings of no configuration: %+v, want the defaults %+v", got, def)
	}
	// Each field set alone keeps its value; the others take the defaults.
	for _, c := range []struct{ set, want Settings }{
		{Settings{Timeout: time.Second}, Settings{time.Second, def.MaxInflight, def.BreakerFailures, def.BreakerOpenFor}},
		{Settings{MaxInflight: 2}, Settings{def.Timeout, 2, def.BreakerFailures, def.BreakerOpenFor}},
		{Settings{BreakerFailures: 7}, Settings{def.Timeout, def.MaxInflight, 7, def.BreakerOpenFor}},
		{Settings{BreakerOpenFor: time.Minute}, Settings{def.Timeout, def.MaxInflight, def.BreakerFailures, time.Minute}},
	} {
		if got := (Config{PerFunction: map[string]Settings{"f": c.set}}).settings("f"); got != c.want {
			t.Errorf("settings of %+v: %+v, want %+v", c.set, got, c.want)
		}
	}
}
