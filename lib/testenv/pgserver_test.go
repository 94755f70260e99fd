package testenv

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/store"
)

// TestPostgresServerKeepsCommittedRowsAcrossKillAndStart injects a crash of
// the whole server (Kill) while one transaction is committed and another
// is still open; afterwards no process of the server runs (ps), and once
// Start has run crash recovery the committed row is there and the open
// transaction's row is not.
func TestPostgresServerKeepsCommittedRowsAcrossKillAndStart(t *testing.T) {
	s := StartPostgresServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := s.DB().Pool
	if _, err := pool.Exec(ctx, `CREATE TABLE crash (what text)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO crash VALUES ('committed')`); err != nil {
		t.Fatal(err)
	}
	open, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Rollback(context.Background()) // fails, and gives the pool its broken connection back
	if _, err := open.Exec(ctx, `INSERT INTO crash VALUES ('open')`); err != nil {
		t.Fatal(err)
	}
	if n := len(serverProcesses(t, s)); n < 3 {
		t.Fatalf("ps shows %d processes of %s before the kill, want the postmaster, its helpers and backends", n, s)
	}

	s.Kill()
	if left := serverProcesses(t, s); len(left) > 0 {
		t.Fatalf("after Kill these processes of %s still run:\n%s", s, strings.Join(left, "\n"))
	}

	s.Start()
	after := openPool(t, s.URL())
	rows, err := after.Query(ctx, `SELECT what FROM crash ORDER BY what`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "committed" {
		t.Errorf("rows after the crash and recovery: %q, want only the committed one", got)
	}
}

// TestPostgresServersFailIndependently injects a kill of one of two
// servers; afterwards the other still answers and its postmaster and
// auxiliary processes all run, while none of the killed one's does.
func TestPostgresServersFailIndependently(t *testing.T) {
	killed, alive := StartPostgresServer(t), StartPostgresServer(t)
	before := lasting(serverProcesses(t, alive))

	killed.Kill()
	if left := serverProcesses(t, killed); len(left) > 0 {
		t.Fatalf("after Kill these processes of %s still run:\n%s", killed, strings.Join(left, "\n"))
	}
	if len(before) < 3 {
		t.Fatalf("ps shows %d lasting processes of %s, want the postmaster and its helpers: %q", len(before), alive, before)
	}
	now := serverProcesses(t, alive)
	pids := map[string]bool{}
	for _, p := range now {
		pids[strings.Fields(p)[0]] = true
	}
	for _, p := range before {
		if !pids[strings.Fields(p)[0]] {
			t.Errorf("%s lost a process at the other server's kill: %s\n(now:\n%s)", alive, p, strings.Join(now, "\n"))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var one int
	if err := alive.DB().Pool.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		t.Errorf("%s after the other server's kill: %v", alive, err)
	}
}

// TestPostgresServerQueryDuringKillFailsFast injects a kill while a query
// runs on the server (pg_sleep, holding its backend); afterwards the query
// has failed with an error well before its context deadline, and a new
// query while the server is down fails the same way instead of hanging.
func TestPostgresServerQueryDuringKillFailsFast(t *testing.T) {
	s := StartPostgresServer(t)
	const deadline = 30 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var pid uint32
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, `SELECT pg_sleep(600)`)
		done <- err
	}()
	// The kill comes once the backend is inside the sleep.
	watcher := s.DB().Pool
	for {
		var state string
		err := watcher.QueryRow(ctx, `SELECT coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = $1`, int32(pid)).Scan(&state)
		if err != nil {
			t.Fatal(err)
		}
		if state == "PgSleep" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	killedAt := time.Now()
	s.Kill()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("query during the kill: %v, want a connection error", err)
		}
		t.Logf("query during the kill failed after %v: %v", time.Since(killedAt).Round(time.Millisecond), err)
	case <-time.After(deadline / 2):
		t.Fatalf("query during the kill still runs %v after it", deadline/2)
	}

	start := time.Now()
	if err := watcher.QueryRow(ctx, `SELECT 1`).Scan(new(int)); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("query while %s is down: %v, want a connection error", s, err)
	} else if took := time.Since(start); took > deadline/2 {
		t.Errorf("query while %s is down took %v to fail", s, took)
	}
}

// serverProcesses are the live processes `ps` shows for s: each carries
// its cluster name (the postmaster on its command line, the others in the
// title they set); zombies, already dead, are left out.
func serverProcesses(t *testing.T, s *PostgresServer) []string {
	t.Helper()
	out, err := exec.Command("ps", "-eo", "pid=,stat=,args=").Output()
	if err != nil {
		t.Fatalf("ps: %v", err)
	}
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 3 || strings.HasPrefix(fields[1], "Z") || !strings.Contains(line, s.srv.ClusterName()) {
			continue
		}
		found = append(found, strings.TrimSpace(line))
	}
	return found
}

// lasting are the processes of a server that run as long as it does: the
// postmaster and its auxiliary processes, not the backends of client
// connections nor autovacuum workers, which come and go by themselves.
func lasting(processes []string) []string {
	var found []string
	for _, p := range processes {
		if !strings.Contains(p, "autovacuum worker") && !strings.Contains(p, "127.0.0.1(") && !strings.Contains(p, "[local]") {
			found = append(found, p)
		}
	}
	return found
}

// openPool is a new pool on url, closed when t ends, as a process started
// after a restart would open.
func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := store.Open(ctx, url)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(pool.Close)
	return pool
}
