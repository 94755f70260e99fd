// Package proc starts and stops the child processes of tidings's tools
// (`make up`, `make chaos`): servers in their own process group, killed by
// the kernel should the tool die first.
package proc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Process is a started child.
type Process struct {
	Cmd  *exec.Cmd
	done chan struct{}
}

// Start runs bin with args and env (added to this process's environment),
// as cred when set, with its output appended to logPath. Its own process
// group keeps a terminal's Ctrl-C for us, so we stop children in order.
func Start(logPath string, cred *syscall.Credential, env []string, bin string, args ...string) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Stop signals the process and waits up to ten seconds for it to exit,
// then kills it.
func (p *Process) Stop(sig syscall.Signal) {
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Kill ends the process at once, as a crash would, and waits for it.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.done }

// WaitFor retries check, each try bounded by two seconds and 100 ms
// apart, until it succeeds or limit passes; then it returns check's last
// error.
func WaitFor(ctx context.Context, limit time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	try := func() (struct{}, error) {
		attempt, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		last = check(attempt)
		return struct{}{}, last
	}
	if _, err := backoff.Retry(ctx, try, backoff.WithBackOff(backoff.NewConstantBackOff(100*time.Millisecond)), backoff.WithMaxElapsedTime(0)); err != nil {
		return last
	}
	return nil
}

// PostgresBinary finds a PostgreSQL program (initdb, postgres, pgbench) on
// PATH or in Debian's versioned directories, newest first.
func PostgresBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	if len(found) == 0 {
		return "", fmt.Errorf("%s not found: install PostgreSQL", name)
	}
	sort.Strings(found)
	return found[len(found)-1], nil
}

// RedisPersistence are the redis-server flags every Redis of tidings runs
// with (docker-compose.yml spells the same): each write is in the
// append-only file before Redis answers, so a restart loses no 2PC record
// or job; a full Redis refuses writes instead of evicting records.
var RedisPersistence = []string{"--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction"}

// ErrExited is a start whose process exited before it was healthy.
var ErrExited = errors.New("exited while starting")

// WaitHTTP waits up to limit for url to answer 200, and gives up at once,
// with ErrExited, when the process exits first: a crash at start-up must
// not cost the whole wait.
func (p *Process) WaitHTTP(ctx context.Context, url string, limit time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.Exited():
			cancel()
		case <-ctx.Done():
		}
	}()
	err := WaitFor(ctx, limit, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %d", url, resp.StatusCode)
		}
		return nil
	})
	select {
	case <-p.Exited():
		return ErrExited
	default:
		return err
	}
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}
