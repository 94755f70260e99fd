package proc

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
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

// TestKillAllReachesChildrenInGroupsOfTheirOwn: the fault is a SIGKILL of
// a parent whose two children left its process group (setsid, as
// PostgreSQL's backends do); afterwards neither child may still run.
func TestKillAllReachesChildrenInGroupsOfTheirOwn(t *testing.T) {
	p, err := Start(filepath.Join(t.TempDir(), "log"), nil, nil, "sh", "-c", "setsid sleep 600 & setsid sleep 600 & wait")
	if err != nil {
		t.Fatal(err)
	}
	var children []int
	if err := WaitFor(context.Background(), 10*time.Second, func(context.Context) error {
		if children = Descendants(p.Cmd.Process.Pid); len(children) < 2 {
			return fmt.Errorf("%d children so far", len(children))
		}
		return nil
	}); err != nil {
		p.Kill()
		t.Fatalf("the shell's children did not start: %v", err)
	}
	for _, pid := range children {
		if pgid, _ := syscall.Getpgid(pid); pgid == p.Cmd.Process.Pid {
			t.Fatalf("child %d is in the shell's group; the test proves nothing", pid)
		}
	}
	if err := p.KillAll(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range children {
		if Running(pid) {
			t.Errorf("child %d still runs after KillAll", pid)
		}
	}
	if Running(p.Cmd.Process.Pid) {
		t.Errorf("the shell still runs after KillAll")
	}
}
