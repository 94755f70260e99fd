package testenv_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"tidings/lib/testenv"
)

// recorder stands in for *testing.T to see Eventually fail.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper()           {}
func (r *recorder) Fatal(args ...any) { r.failed = fmt.Sprint(args...) }

// TestEventuallyStopsAtTheFirstSuccess: cond is not called again once it
// holds, for both forms of cond.
func TestEventuallyStopsAtTheFirstSuccess(t *testing.T) {
	calls := 0
	testenv.Eventually(t, "the third call", 10, func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}
	calls = 0
	testenv.Eventually(t, "the second call", 10, func() error {
		if calls++; calls < 2 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 2 {
		t.Fatalf("cond called %d times, want 2", calls)
	}
}

// TestEventuallyFailsNamingWhatAndTheLastError: after its tries, the test
// fails with what was awaited and, for an error cond, the last error.
func TestEventuallyFailsNamingWhatAndTheLastError(t *testing.T) {
	r := &recorder{TB: t}
	calls := 0
	testenv.Eventually(r, "never", 3, func() bool { calls++; return false })
	if calls != 3 || r.failed == "" {
		t.Fatalf("calls = %d, failed = %q; want 3 calls and a failure", calls, r.failed)
	}
	r = &recorder{TB: t}
	testenv.Eventually(r, "never", 2, func() error { return errors.New("still down") })
	if !strings.Contains(r.failed, "still down") {
		t.Fatalf("failure %q does not carry the last error", r.failed)
	}
}
