package invoke

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
)

// TestOutcomesAreJudgedOnceForTheBreakerAndForRetries lists every kind of
// outcome with what Failed (the breaker) and Retryable (the coordinator's
// and the job queue's retries) must say of it.
func TestOutcomesAreJudgedOnceForTheBreakerAndForRetries(t *testing.T) {
	status := func(s int) error { return fmt.Errorf("wrapped: %w", &CallError{Function: "f", Status: s}) }
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	cases := []struct {
		name              string
		err               error
		failed, retryable bool
	}{
		{"success", nil, false, false},
		{"300: not a verdict on the request", status(300), false, true},
		{"302", status(302), false, true},
		{"400", status(400), false, false},
		{"401", status(401), false, false},
		{"403", status(403), false, false},
		{"404", status(404), false, false},
		{"409", status(409), false, false},
		{"413", status(413), false, false},
		{"408: the body was not received, the function never acted", status(408), false, true},
		{"429", status(429), false, true},
		{"500", status(500), true, true},
		{"501: not a verdict on the request", status(501), false, true},
		{"502", status(502), true, true},
		{"503", status(503), true, true},
		{"504", status(504), true, true},
		{"505", status(505), false, true},
		{"507", status(507), false, true},
		{"520", status(520), false, true},
		{"499", status(499), false, false},
		{"refused connection", fmt.Errorf("call f: %w", dial), true, true},
		{"timeout", fmt.Errorf("call f: %w", context.DeadlineExceeded), true, true},
		{"breaker open", fmt.Errorf("f: %w", ErrOpen), true, true},
		{"no free slot", fmt.Errorf("f: %w", ErrBusy), true, true},
		{"marked down", fmt.Errorf("f: %w", ErrDown), true, true},
		{"caller gave up", fmt.Errorf("f: %w: %w", ErrCallerDone, context.Canceled), false, true},
	}
	for _, c := range cases {
		if got := Failed(c.err); got != c.failed {
			t.Errorf("Failed(%s) = %v, want %v", c.name, got, c.failed)
		}
		if got := Retryable(c.err); got != c.retryable {
			t.Errorf("Retryable(%s) = %v, want %v", c.name, got, c.retryable)
		}
	}
}
