package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/store"
	"tidings/lib/testenv"
)

// With one database for the directory and the counter, a prepare holding
// the pool's only connection still reads its recipient set: ReadsThrough
// reads it through the prepare's own transaction instead of waiting for a
// second connection that no one will give back.
func TestAPrepareOnTheDirectorysOwnPoolReadsThroughItsTransaction(t *testing.T) {
	db := testenv.NewDB(t)
	topic, _, subs := testenv.Topic(t, db.Pool, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := store.FixRecipients(ctx, db.Pool, "tx-one-conn", topic)
	if err != nil || n != len(subs) {
		t.Fatalf("fix recipients: %d, %v", n, err)
	}
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if through := store.ReadsThrough(db.Pool, pool, nil); through != db.Pool {
		t.Errorf("another pool's directory is read through %T, want the directory itself", through)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return store.HoldIncrements(ctx, tx, store.ReadsThrough(pool, pool, tx), "tx-one-conn", len(subs))
	})
	if err != nil {
		t.Fatalf("hold increments with the pool's one connection: %v", err)
	}
	var held int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pending_increments WHERE tx_id = 'tx-one-conn'`).Scan(&held); err != nil || held != len(subs) {
		t.Errorf("held %d increments (%v), want %d", held, err, len(subs))
	}
}
