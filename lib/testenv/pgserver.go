package testenv

import (
	"context"
	"testing"

	"tidings/infra/proc"
	"tidings/lib/store"
)

// PostgresServer is a throwaway PostgreSQL server on a loopback port of
// its own (proc.PostgresServer), so a test can kill one database server,
// alone, and start it again on the same data directory, without touching
// the server other tests share.
type PostgresServer struct {
	t   testing.TB
	srv *proc.PostgresServer
	db  *DB
}

// StartPostgresServer starts a PostgreSQL server (fsync off) on a free
// loopback port, from a copy of a data directory initdb made once per
// machine, and creates a migrated database on it as NewDB does; the server
// is killed and its files removed when t ends.
func StartPostgresServer(t testing.TB) *PostgresServer {
	t.Helper()
	srv, err := proc.NewPostgresServer(context.Background(), "tidings-test-"+uniqueName(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Remove(); err != nil {
			t.Error(err)
		}
	})
	s := &PostgresServer{t: t, srv: srv}
	s.db = newDB(t, srv.AdminURL(), store.Schemas...)
	return s
}

// URL is the migrated test database on the server (sslmode=disable).
func (s *PostgresServer) URL() string { return s.db.URL }

// DB is the migrated test database on the server, with a pool open on it;
// the pool's connections break when the server is killed, and Start
// drops them.
func (s *PostgresServer) DB() *DB { return s.db }

// Start runs the server (again) on its data directory and port, and waits
// until it accepts connections: after Kill, once crash recovery is done.
// The connections DB's pool held before the kill are closed, so that none
// is handed out broken.
func (s *PostgresServer) Start() {
	s.t.Helper()
	if err := s.srv.Start(context.Background()); err != nil {
		s.t.Fatal(err)
	}
	s.db.Pool.Reset()
}

// Kill ends the server as a crash would (proc.PostgresServer.Kill).
// Killing a killed server does nothing.
func (s *PostgresServer) Kill() {
	if err := s.srv.Kill(); err != nil {
		s.t.Error(err)
	}
}

// String names the server in failure messages; `ps` shows the same
// cluster name on each of its processes.
func (s *PostgresServer) String() string { return s.srv.String() }
