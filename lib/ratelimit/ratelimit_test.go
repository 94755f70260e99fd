package ratelimit

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"tidings/lib/config"
	"tidings/lib/testenv"
)

func newLimiter(t *testing.T) *Limiter {
	r := testenv.NewRedis(t)
	return New(r.Client, r.Prefix, time.Second, nil)
}

func TestTakeRefusesPastTheBudgetWithARetryAfter(t *testing.T) {
	l := newLimiter(t)
	limit := Limit{Name: "test", Rate: config.Rate{Count: 3, Per: time.Hour}}
	ctx := context.Background()
	for i := range 3 {
		if err := l.Take(ctx, limit, "alice"); err != nil {
			t.Fatalf("take %d of 3: %v, want allowed", i+1, err)
		}
	}
	err := l.Take(ctx, limit, "alice")
	var exceeded *Exceeded
	if !errors.As(err, &exceeded) {
		t.Fatalf("take 4 of 3: %v, want *Exceeded", err)
	}
	// One unit comes back every 20 minutes.
	if exceeded.RetryAfter <= 0 || exceeded.RetryAfter > 20*time.Minute {
		t.Errorf("retry after %v, want within (0, 20m]", exceeded.RetryAfter)
	}
	if err := l.Take(ctx, limit, "bob"); err != nil {
		t.Errorf("another key: %v, want its own budget", err)
	}
	if err := l.Take(ctx, Limit{Name: "other", Rate: limit.Rate}, "alice"); err != nil {
		t.Errorf("another limit, same key: %v, want its own budget", err)
	}
}

func TestCheckSpendsNothing(t *testing.T) {
	l := newLimiter(t)
	limit := Limit{Name: "test", Rate: config.Rate{Count: 2, Per: time.Hour}}
	ctx := context.Background()
	for i := range 5 {
		if err := l.Check(ctx, limit, "alice"); err != nil {
			t.Fatalf("check %d on a fresh budget: %v", i+1, err)
		}
	}
	for range 2 {
		if err := l.Take(ctx, limit, "alice"); err != nil {
			t.Fatalf("take after checks: %v; checks must not spend", err)
		}
	}
	var exceeded *Exceeded
	if err := l.Check(ctx, limit, "alice"); !errors.As(err, &exceeded) || exceeded.RetryAfter <= 0 {
		t.Fatalf("check on a spent budget: %v, want *Exceeded with a positive RetryAfter", err)
	}
}

func TestBudgetComesBackWhenTheWindowPasses(t *testing.T) {
	l := newLimiter(t)
	limit := Limit{Name: "test", Rate: config.Rate{Count: 1, Per: time.Second}}
	ctx := context.Background()
	if err := l.Take(ctx, limit, "alice"); err != nil {
		t.Fatal(err)
	}
	var exceeded *Exceeded
	if err := l.Take(ctx, limit, "alice"); !errors.As(err, &exceeded) {
		t.Fatalf("second take within the second: %v, want *Exceeded", err)
	}
	// Wait what it said, then poll (bounded) for the budget.
	time.Sleep(exceeded.RetryAfter)
	deadline := time.Now().Add(5 * time.Second)
	for l.Check(ctx, limit, "alice") != nil {
		if time.Now().After(deadline) {
			t.Fatal("the budget did not come back within 5 s of its Retry-After")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestOffAndNilLimitNothing(t *testing.T) {
	l := newLimiter(t)
	ctx := context.Background()
	for range 10 {
		if err := l.Take(ctx, Limit{Name: "off"}, "alice"); err != nil {
			t.Fatalf("an off limit refused: %v", err)
		}
	}
	var none *Limiter
	if err := none.Take(ctx, Limit{Name: "x", Rate: config.Rate{Count: 1, Per: time.Hour}}, "a"); err != nil {
		t.Fatalf("a nil limiter refused: %v", err)
	}
}

func TestRedisDownFailsOpenUnlessFailClosed(t *testing.T) {
	l := New(testenv.DownRedis(t), "tidings-test:", 300*time.Millisecond, nil)
	ctx := context.Background()
	rate := config.Rate{Count: 1, Per: time.Hour}
	for range 3 {
		if err := l.Take(ctx, Limit{Name: "open", Rate: rate}, "alice"); err != nil {
			t.Fatalf("fail-open limit with Redis down: %v, want allowed", err)
		}
	}
	err := l.Check(ctx, Limit{Name: "closed", Rate: rate, FailClosed: true}, "alice")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("fail-closed limit with Redis down: %v, want ErrUnavailable", err)
	}
	if resp, ok := Answer(err); ok || resp.StatusCode != 503 {
		t.Errorf("answer to ErrUnavailable: %d ok=%v, want 503", resp.StatusCode, ok)
	}
}

func TestExceededAnswers429WithRetryAfterInTheErrorShape(t *testing.T) {
	resp, ok := Answer(&Exceeded{Limit: "test", RetryAfter: 1500 * time.Millisecond})
	if ok || resp.StatusCode != 429 {
		t.Fatalf("status %d ok=%v, want 429", resp.StatusCode, ok)
	}
	if got := resp.Header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After %q, want 2 (rounded up)", got)
	}
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil || body.Error.Code != "rate_limited" || body.Error.Message == "" {
		t.Errorf("body %s (%v), want the error shape with code rate_limited", resp.Body, err)
	}
	if s := (&Exceeded{RetryAfter: time.Millisecond}).Seconds(); s != 1 {
		t.Errorf("seconds of 1ms = %d, want at least 1", s)
	}
	if _, ok := Answer(nil); !ok {
		t.Error("Answer(nil) must let the call through")
	}
}
