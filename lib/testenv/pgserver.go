package testenv

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
	"testing"
	"time"

	"tidings/infra/proc"
	"tidings/lib/store"
)

// PostgresServer is a throwaway PostgreSQL server on a loopback port of
// its own, so a test can kill one database server, alone, and start it
// again on the same data directory, without touching the server other
// tests share.
type PostgresServer struct {
	t    testing.TB
	opts proc.PostgresOptions
	proc *proc.Process // nil while killed
	db   *DB
}

// StartPostgresServer starts a PostgreSQL server (fsync off) on a free
// loopback port, from a copy of a data directory initdb made once per
// machine, and creates a migrated database on it as NewDB does; the server
// is killed and its files removed when t ends.
func StartPostgresServer(t testing.TB) *PostgresServer {
	t.Helper()
	template, err := postgresTemplate()
	if err != nil {
		t.Fatalf("PostgreSQL data directory template: %v", err)
	}
	// Not t.TempDir: as root the server runs as the postgres user, who
	// must reach the directory, and /tmp lets everyone through.
	dir, err := os.MkdirTemp("", "tidings-pgserver-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	// cp -a keeps the owner (the postgres user, as root) and the modes
	// PostgreSQL insists on.
	if out, err := exec.Command("cp", "-a", template, proc.PostgresData(dir)).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v: %s", template, err, out)
	}
	_, port, _ := net.SplitHostPort(proc.FreeAddr())
	s := &PostgresServer{t: t, opts: proc.PostgresOptions{
		Dir: dir, Listen: "127.0.0.1", Port: port, ClusterName: "tidings-test-" + uniqueName(),
	}}
	s.Start()
	t.Cleanup(s.Kill) // before the directory is removed
	s.db = newDB(t, s.adminURL(), store.Schemas...)
	return s
}

// URL is the migrated test database on the server (sslmode=disable).
func (s *PostgresServer) URL() string { return s.db.URL }

// DB is the migrated test database on the server, with a pool open on it;
// the pool's connections break when the server is killed.
func (s *PostgresServer) DB() *DB { return s.db }

// Start runs the server (again) on its data directory and port, and waits
// until it accepts connections: after Kill, once crash recovery is done.
func (s *PostgresServer) Start() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*proc.PostgresReadyWithin)
	defer cancel()
	p, err := proc.RunPostgres(ctx, s.opts)
	if err != nil {
		s.t.Fatalf("start %s: %v", s, err)
	}
	s.proc = p
}

// Kill ends the server as a crash would: SIGKILL to the postmaster and to
// every backend and auxiliary process (each sits in a process group of its
// own), and returns once none of them runs. Killing a killed server does
// nothing.
func (s *PostgresServer) Kill() {
	if s.proc == nil {
		return
	}
	if err := s.proc.KillAll(); err != nil {
		s.t.Errorf("kill %s: %v", s, err)
	}
	s.proc = nil
}

// String names the server in failure messages; `ps` shows the same
// cluster name on each of its processes.
func (s *PostgresServer) String() string {
	return fmt.Sprintf("PostgreSQL %s on port %s (log in %s)", s.opts.ClusterName, s.opts.Port,
		filepath.Join(s.opts.Dir, "server.log"))
}

// adminURL is the server's maintenance database, as its superuser.
func (s *PostgresServer) adminURL() string {
	return fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", net.JoinHostPort(s.opts.Listen, s.opts.Port))
}

// postgresTemplate is a data directory initdb made, shared by the test
// processes of the machine: initdb takes seconds, a copy a fraction. It
// lives in os.TempDir, named for the PostgreSQL version and the user
// (as root the files belong to the postgres user); it is built in a
// directory of its own and renamed into place whole, so processes racing
// to build it never see half of one.
var postgresTemplate = sync.OnceValues(func() (string, error) {
	version, err := proc.PostgresVersion()
	if err != nil {
		return "", err
	}
	// The layout tag changes with proc.InitPostgres's options, so that a
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
	if err := proc.InitPostgres(ctx, proc.PostgresOptions{Dir: build}); err != nil {
		return "", err
	}
	if err := os.Rename(proc.PostgresData(build), final); err != nil {
		if _, serr := os.Stat(final); serr == nil {
			return final, nil // another process renamed its copy first
		}
		return "", err
	}
	return final, nil
})
