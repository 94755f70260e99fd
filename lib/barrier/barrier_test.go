package barrier

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"tidings/lib/testenv"
)

// counting work records each run in a table, so a test can see whether the
// barrier ran it and how often.
func setup(t *testing.T) (*Barrier, func(name string) Work, func(name string) int) {
	db := testenv.NewDB(t)
	if _, err := db.Pool.Exec(context.Background(), `CREATE TABLE runs (name text)`); err != nil {
		t.Fatal(err)
	}
	work := func(name string) Work {
		return func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO runs VALUES ($1)`, name)
			return err
		}
	}
	count := func(name string) int {
		var n int
		_ = db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM runs WHERE name = $1`, name).Scan(&n)
		return n
	}
	return New(db.Pool, "test"), work, count
}

func TestPrepareAndCommitRunOnceHoweverOftenRepeated(t *testing.T) {
	b, work, count := setup(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if err := b.Prepare(ctx, "tx1", work("prepare")); err != nil {
			t.Fatalf("prepare #%d: %v", i+1, err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := b.Commit(ctx, "tx1", work("commit")); err != nil {
			t.Fatalf("commit #%d: %v", i+1, err)
		}
	}
	if count("prepare") != 1 || count("commit") != 1 {
		t.Errorf("prepare ran %d times, commit %d; want once each", count("prepare"), count("commit"))
	}
	if err := b.Rollback(ctx, "tx1", work("rollback")); !errors.Is(err, ErrCommitted) {
		t.Errorf("rollback after commit: %v, want ErrCommitted", err)
	}
	if err := b.Prepare(ctx, "tx1", work("prepare")); err != nil || count("prepare") != 1 {
		t.Errorf("prepare after commit: %v, ran %d times; want a no-op", err, count("prepare"))
	}
}

func TestRollbackBeforePrepareFencesTheLatePrepare(t *testing.T) {
	b, work, count := setup(t)
	ctx := context.Background()
	if err := b.Rollback(ctx, "tx2", work("rollback")); err != nil {
		t.Fatalf("rollback without prepare: %v, want success", err)
	}
	if err := b.Prepare(ctx, "tx2", work("prepare")); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("prepare after rollback: %v, want ErrRolledBack", err)
	}
	if count("prepare") != 0 || count("rollback") != 0 {
		t.Errorf("work ran: prepare %d, rollback %d; want none (nothing was prepared)", count("prepare"), count("rollback"))
	}
	if err := b.Commit(ctx, "tx2", work("commit")); !errors.Is(err, ErrRolledBack) {
		t.Errorf("commit after rollback: %v, want ErrRolledBack", err)
	}
}

func TestRollbackUndoesPreparedWorkOnce(t *testing.T) {
	b, work, count := setup(t)
	ctx := context.Background()
	if err := b.Prepare(ctx, "tx3", work("prepare")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := b.Rollback(ctx, "tx3", work("undo")); err != nil {
			t.Fatalf("rollback #%d: %v", i+1, err)
		}
	}
	if count("undo") != 1 {
		t.Errorf("undo ran %d times, want once", count("undo"))
	}
}

func TestCommitOfAnUnknownTransactionIsRefused(t *testing.T) {
	b, work, count := setup(t)
	if err := b.Commit(context.Background(), "never", work("commit")); !errors.Is(err, ErrNotPrepared) {
		t.Errorf("commit of an unknown tx: %v, want ErrNotPrepared", err)
	}
	if count("commit") != 0 {
		t.Error("commit work ran for an unknown transaction")
	}
}

func TestFailedPrepareLeavesNoTrace(t *testing.T) {
	b, work, count := setup(t)
	ctx := context.Background()
	boom := errors.New("boom")
	err := b.Prepare(ctx, "tx4", func(ctx context.Context, tx pgx.Tx) error {
		if err := work("prepare")(ctx, tx); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("prepare: %v, want boom", err)
	}
	if count("prepare") != 0 {
		t.Error("a failed prepare's work was kept")
	}
	// The coordinator now rolls back: that must succeed and fence the tx.
	if err := b.Rollback(ctx, "tx4", work("undo")); err != nil || count("undo") != 0 {
		t.Errorf("rollback after a failed prepare: %v, undo ran %d times; want success with nothing to undo", err, count("undo"))
	}
}

// TestConcurrentPrepareAndRollbackNeverLeaveWorkBehind races the two calls
// many times: whichever wins, no prepared work may remain.
func TestConcurrentPrepareAndRollbackNeverLeaveWorkBehind(t *testing.T) {
	b, work, count := setup(t)
	ctx := context.Background()
	const rounds = 30
	for i := 0; i < rounds; i++ {
		tx := "race" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = b.Prepare(ctx, tx, work("prepare:"+tx)) }()
		go func() { defer wg.Done(); _ = b.Rollback(ctx, tx, work("undo:"+tx)) }()
		wg.Wait()
		if count("prepare:"+tx) != count("undo:"+tx) {
			t.Errorf("%s: prepared %d times, undone %d: work left behind", tx, count("prepare:"+tx), count("undo:"+tx))
		}
	}
}
