package proc

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestPostgresServerSyncsOnlyWhenDurable: a throwaway server runs with
// fsync off, and on when durable asks for it, as a benchmark comparing it
// with a production-like server needs.
func TestPostgresServerSyncsOnlyWhenDurable(t *testing.T) {
	ctx := context.Background()
	for _, durable := range []bool{false, true} {
		s, err := NewPostgresServer(ctx, "tidings-proc-test", durable)
		if err != nil {
			t.Fatal(err)
		}
		var fsync string
		conn, err := pgx.Connect(ctx, s.AdminURL())
		if err == nil {
			err = conn.QueryRow(ctx, `SHOW fsync`).Scan(&fsync)
			conn.Close(ctx)
		}
		if rerr := s.Remove(); rerr != nil {
			t.Error(rerr)
		}
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if want := map[bool]string{false: "off", true: "on"}[durable]; fsync != want {
			t.Errorf("durable %v: fsync is %s, want %s", durable, fsync, want)
		}
	}
}
