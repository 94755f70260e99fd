package testenv

import (
	"fmt"
	"testing"
	"time"
)

// PollInterval is how long Eventually waits between two tries.
const PollInterval = 50 * time.Millisecond

// Eventually tries cond every PollInterval, at most tries times, and fails
// t naming what never happened (with cond's last error, for a cond that
// returns one). It is bounded polling, never a timed assertion: the bound
// only keeps a broken build from hanging.
func Eventually[C func() bool | func() error](t testing.TB, what string, tries int, cond C) {
	t.Helper()
	var last error
	for i := range tries {
		if i > 0 {
			time.Sleep(PollInterval)
		}
		switch c := any(cond).(type) {
		case func() bool:
			if c() {
				return
			}
		case func() error:
			if last = c(); last == nil {
				return
			}
		}
	}
	msg := fmt.Sprintf("gave up waiting for %s after %d tries", what, tries)
	if last != nil {
		msg += ": " + last.Error()
	}
	t.Fatal(msg)
}
