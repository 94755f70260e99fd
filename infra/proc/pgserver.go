package proc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// PostgresServer is a throwaway PostgreSQL server on a loopback port of
// its own, made from a copy of an initdb template, that a tool or a test
// can kill, alone, and start again on the same data directory.
type PostgresServer struct {
	opts PostgresOptions
	mu   sync.Mutex
	p    *Process // nil while killed
}

// NewPostgresServer makes a data directory (a copy of the machine's
// template, see postgresTemplate) in a new directory under os.TempDir and
// starts a server on it on a free loopback port, named clusterName in `ps`,
// with fsync on if durable (PostgresOptions.Durable). Remove kills it and
// deletes its files.
func NewPostgresServer(ctx context.Context, clusterName string, durable bool) (*PostgresServer, error) {
	template, err := postgresTemplate()
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL data directory template: %w", err)
	}
	// Not a private temporary directory: as root the server runs as the
	// postgres user, who must reach it, and /tmp lets everyone through.
	dir, err := os.MkdirTemp("", "tidings-pgserver-")
	if err != nil {
		return nil, err
	}
	// cp -a keeps the owner (the postgres user, as root) and the modes
	// PostgreSQL insists on.
	if out, err := exec.CommandContext(ctx, "cp", "-a", template, PostgresData(dir)).CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("copy %s: %v: %s", template, err, out)
	}
	_, port, _ := net.SplitHostPort(FreeAddr())
	s := &PostgresServer{opts: PostgresOptions{Dir: dir, Listen: "127.0.0.1", Port: port,
		ClusterName: clusterName, Durable: durable}}
	if err := s.Start(ctx); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// Start runs the server (again) on its data directory and port, and waits
// until it accepts connections: after Kill, once crash recovery is done.
// Starting a running server does nothing.
func (s *PostgresServer) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*PostgresReadyWithin)
	defer cancel()
	p, err := RunPostgres(ctx, s.opts)
	if err != nil {
		return fmt.Errorf("start %s: %w", s, err)
	}
	s.p = p
	return nil
}

// Kill ends the server as a crash would: SIGKILL to the postmaster and to
// every backend and auxiliary process (each sits in a process group of its
// own), and returns once none of them runs. Killing a killed server does
// nothing.
func (s *PostgresServer) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.p == nil {
		return nil
	}
	err := s.p.KillAll()
	s.p = nil
	if err != nil {
		return fmt.Errorf("kill %s: %w", s, err)
	}
	return nil
}

// Remove kills the server and deletes its files.
func (s *PostgresServer) Remove() error {
	err := s.Kill()
	if rerr := os.RemoveAll(s.opts.Dir); err == nil {
		err = rerr
	}
	return err
}

// ClusterName is the name `ps` shows on each of the server's processes.
func (s *PostgresServer) ClusterName() string { return s.opts.ClusterName }

// AdminURL is the server's maintenance database, as its superuser.
func (s *PostgresServer) AdminURL() string {
	return fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", net.JoinHostPort(s.opts.Listen, s.opts.Port))
}

// String names the server in failure messages.
func (s *PostgresServer) String() string {
	return fmt.Sprintf("PostgreSQL %s on port %s (log in %s)", s.opts.ClusterName, s.opts.Port,
		filepath.Join(s.opts.Dir, "server.log"))
}

// postgresTemplate is a data directory initdb made, shared by the
// processes of the machine (tests and tools): initdb takes seconds, a copy
// a fraction. It lives in os.TempDir, named for the PostgreSQL version and
// the user (as root the files belong to the postgres user); it is built in
// a directory of its own and renamed into place whole, so processes racing
// to build it never see half of one.
var postgresTemplate = sync.OnceValues(func() (string, error) {
	version, err := PostgresVersion()
	if err != nil {
		return "", err
	}
	// The layout tag changes with InitPostgres's options, so that a
	// machine's older template is never reused after they change.
	const layout = "initdb-1"
	sum := sha256.Sum256([]byte(version + "\x00" + layout))
	name := fmt.Sprintf("tidings-pgdata-%s-uid%d", hex.EncodeToString(sum[:6]), os.Geteuid())
	final := filepath.Join(os.TempDir(), name)
	if _, err := os.Stat(final); err == nil {
		return final, nil
	}
	build, err := os.MkdirTemp("", name+"-building-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(build)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := InitPostgres(ctx, PostgresOptions{Dir: build}); err != nil {
		return "", err
	}
	if err := os.Rename(PostgresData(build), final); err != nil {
		if _, serr := os.Stat(final); serr == nil {
			return final, nil // another process renamed its copy first
		}
		return "", err
	}
	return final, nil
})
