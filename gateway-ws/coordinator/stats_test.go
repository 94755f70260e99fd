package coordinator

import (
	"context"
	"io"
	"testing"
	"time"

	"tidings/lib/logging"
	"tidings/lib/testenv"
)

// The overview counts what the records say: every transaction started
// and how it finished, and the records not yet finished (open until their
// final state is written).
func TestOverviewCountsOutcomesAndUnfinishedRecords(t *testing.T) {
	c, _ := newRecordsOnly(t)
	ctx := context.Background()

	if o, err := c.Overview(ctx); err != nil || o != (Overview{}) {
		t.Fatalf("before any transaction: %+v (%v), want all zero", o, err)
	}
	for _, id := range []string{"tx-finished", "tx-open"} {
		if err := c.records.create(ctx, &Record{ID: id, State: Preparing, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		c.records.count(ctx, "published")
	}
	if err := c.records.transition(ctx, "tx-finished", Preparing, Aborted); err != nil {
		t.Fatal(err)
	}
	c.records.count(ctx, "aborted")

	want := Overview{Stats: Stats{Published: 2, Aborted: 1}, Open: 1}
	if o, err := c.Overview(ctx); err != nil || o != want {
		t.Errorf("overview %+v (%v), want %+v", o, err, want)
	}
	if s, err := c.Stats(ctx); err != nil || s != want.Stats {
		t.Errorf("stats %+v (%v), want %+v", s, err, want.Stats)
	}
	if n, err := c.OpenTransactions(ctx); err != nil || n != 1 {
		t.Errorf("open transactions %d (%v), want 1 (tx-open)", n, err)
	}
}

// With Redis gone the overview is an error, not zeros a dashboard would
// show as "nothing open".
func TestOverviewFailsWhileRedisIsDown(t *testing.T) {
	srv := testenv.StartRedisServer(t)
	c := New(Config{Redis: srv.Client(), Prefix: "tidings-test:", Log: logging.NewTo(io.Discard, "error", "test"),
		Settings: Settings{RecordTimeout: 200 * time.Millisecond}})
	t.Cleanup(func() { _ = c.Close() })
	srv.Stop() // the fault: Redis is down for both reads
	if o, err := c.Overview(context.Background()); err == nil {
		t.Errorf("overview with Redis down: %+v, want an error", o)
	}
	if n, err := c.OpenTransactions(context.Background()); err == nil {
		t.Errorf("open transactions with Redis down: %d, want an error", n)
	}
}

// newRecordsOnly is a coordinator on a Redis prefix of the test's own and
// nothing else: enough to read and write transaction records.
func newRecordsOnly(t *testing.T) (*Coordinator, *testenv.Redis) {
	t.Helper()
	rd := testenv.NewRedis(t)
	c := New(Config{Redis: rd.Client, Prefix: rd.Prefix, Log: logging.NewTo(io.Discard, "error", "test")})
	t.Cleanup(func() { _ = c.Close() })
	return c, rd
}
