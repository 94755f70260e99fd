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
	"strconv"
	"strings"
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
	return p.WaitReady(ctx, limit, func(ctx context.Context) error {
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
}

// WaitReady retries check as WaitFor does, and gives up at once, with
// ErrExited, when the process exits first.
func (p *Process) WaitReady(ctx context.Context, limit time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.Exited():
			cancel()
		case <-ctx.Done():
		}
	}()
	err := WaitFor(ctx, limit, check)
	select {
	case <-p.Exited():
		return ErrExited
	default:
		return err
	}
}

// KillAll ends the process and every descendant at once (SIGKILL), as a
// crash of the whole server would, and waits until none of them runs.
// Unlike a process-group kill it also reaches children in groups of their
// own, such as PostgreSQL's backends. The process is stopped first, so
// that it forks nothing the kill would miss. It fails if a descendant
// still runs ten seconds after its SIGKILL.
func (p *Process) KillAll() error {
	_ = p.Cmd.Process.Signal(syscall.SIGSTOP)
	descendants := Descendants(p.Cmd.Process.Pid)
	for _, pid := range descendants {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	p.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range descendants {
		for Running(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("process %d still runs after SIGKILL", pid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// Descendants are the processes below pid (children, theirs, ...), read
// from /proc.
func Descendants(pid int) []int {
	children := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		child, ppid, _, ok := procStat(path)
		if ok {
			children[ppid] = append(children[ppid], child)
		}
	}
	var found []int
	for next := []int{pid}; len(next) > 0; {
		parent := next[0]
		next = append(next[1:], children[parent]...)
		found = append(found, children[parent]...)
	}
	return found
}

// Running says whether pid is a process that has not exited: neither gone
// nor a zombie waiting for its parent.
func Running(pid int) bool {
	_, _, state, ok := procStat(fmt.Sprintf("/proc/%d/stat", pid))
	return ok && state != "Z" && state != "X"
}

// procStat reads a process's pid, parent and state from its
// /proc/PID/stat; the command name in parentheses may hold any character,
// so the fields are counted from its closing one.
func procStat(path string) (pid, ppid int, state string, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, "", false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return 0, 0, "", false
	}
	fields := strings.Fields(s[end+1:])
	if len(fields) < 2 {
		return 0, 0, "", false
	}
	pid, err1 := strconv.Atoi(strings.TrimSpace(s[:open]))
	ppid, err2 := strconv.Atoi(fields[1])
	return pid, ppid, fields[0], err1 == nil && err2 == nil
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

// Command is bin with args, to run in this process's environment with env
// added, and this process's standard streams.
func Command(env []string, bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd
}
