package store_test

import (
	"context"
	"embed"
	"io/fs"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"tidings/lib/store"
	"tidings/lib/testenv"
)

// The migrations of the last release before each participant had its own
// database: one set, every table in DATABASE_URL.
//
//go:embed testdata/pre-split/*.sql
var preSplit embed.FS

// A database that ran the single migration set before the split keeps its
// data and gets the new tables when all three URLs name it.
func TestMigratingADatabaseFromBeforeTheSplitKeepsItsData(t *testing.T) {
	ctx := context.Background()
	db := testenv.NewEmptyDB(t)
	old, _ := fs.Sub(preSplit, "testdata/pre-split")
	sqlDB := stdlib.OpenDBFromPool(db.Pool)
	defer sqlDB.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatal(err)
	}
	owner, _ := testenv.User(t, db.Pool, "owner@example.com")
	topic, err := store.CreateTopic(ctx, db.Pool, owner, "old", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`INSERT INTO notifications (tx_id, topic_id, sender_id, title, state) VALUES ('tx-old', $1, $2, 'kept', 'committed')`,
		`INSERT INTO deliveries (notification_id, user_id) SELECT id, $2 FROM notifications WHERE $1 > 0`,
		`INSERT INTO counters (user_id, unread) SELECT $2, 1 WHERE $1 > 0`,
	} {
		if _, err := db.Pool.Exec(ctx, sql, topic.ID, owner); err != nil {
			t.Fatal(err)
		}
	}

	if err := store.Single(db.Pool).Migrate(ctx, nil); err != nil {
		t.Fatalf("migrate a database from before the split: %v", err)
	}
	if err := store.Single(db.Pool).Migrate(ctx, nil); err != nil {
		t.Fatalf("migrate again: %v", err)
	}
	if err := store.CheckInvariant(ctx, db.Pool, db.Pool); err != nil {
		t.Error(err)
	}
	if n, err := store.UnreadDeliveries(ctx, db.Pool, owner); err != nil || n != 1 {
		t.Errorf("unread deliveries %d (%v), want the old notification", n, err)
	}
	if _, err := db.Pool.Exec(ctx, `SELECT FROM ack_outbox, applied_acks`); err != nil {
		t.Errorf("new tables missing: %v", err)
	}
}

// Each schema alone makes only its own tables: a participant's database
// holds nothing of the directory or of the other participant.
func TestEachSchemaMakesOnlyItsOwnTables(t *testing.T) {
	dbs := testenv.NewDatabases(t)
	want := map[*testenv.DB][]string{
		dbs.Directory: {"sent_mails", "subscriptions", "topics", "users"},
		dbs.Persist:   {"ack_outbox", "deliveries", "notifications", "tx_barriers"},
		dbs.Counter:   {"applied_acks", "counters", "pending_increments", "tx_barriers"},
	}
	for db, tables := range want {
		rows, _ := db.Pool.Query(context.Background(), `SELECT table_name FROM information_schema.tables
			WHERE table_schema = 'public' AND table_name NOT LIKE 'goose%' ORDER BY 1`)
		var got []string
		for rows.Next() {
			var name string
			_ = rows.Scan(&name)
			got = append(got, name)
		}
		rows.Close()
		if strings.Join(got, ",") != strings.Join(tables, ",") {
			t.Errorf("%s holds %v, want %v", db.URL, got, tables)
		}
	}
}
