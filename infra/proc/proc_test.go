package proc

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWaitForRetriesUntilTheCheckPasses(t *testing.T) {
	tries := 0
	err := WaitFor(context.Background(), 5*time.Second, func(context.Context) error {
		if tries++; tries < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Errorf("WaitFor: %v after %d tries, want success on the third", err, tries)
	}
}

func TestWaitForGivesUpAtItsLimitWithTheChecksLastError(t *testing.T) {
	notYet := errors.New("not yet")
	start := time.Now()
	err := WaitFor(context.Background(), 300*time.Millisecond, func(context.Context) error { return notYet })
	if took := time.Since(start); !errors.Is(err, notYet) || took > 2*time.Second {
		t.Errorf("WaitFor of a check that never passes: %v after %v, want its error after about 300ms", err, took)
	}
}
