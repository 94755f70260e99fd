package store_test

import (
	"context"
	"embed"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"tidings/lib/store"
	"tidings/lib/testenv"
)

// The two migrations of the last release before each participant had its
// own database that the split moved out of the directory's set; with the
// directory's 00001 and 00003 (unchanged) they were that release's one set,
// every table in DATABASE_URL.
//
//go:embed testdata/pre-split/*.sql
var preSplit embed.FS

// preSplitMigrations is the last release's migration set.
func preSplitMigrations(t *testing.T) fs.FS {
	moved, err := fs.Sub(preSplit, "testdata/pre-split")
	if err != nil {
		t.Fatal(err)
	}
	set := fstest.MapFS{}
	for _, dir := range []fs.FS{store.Directory.Migrations(), moved} {
		files, _ := fs.Glob(dir, "*.sql")
		for _, name := range files {
			if name >= "00004" && dir != moved {
				continue // the directory's migrations since that release
			}
			b, err := fs.ReadFile(dir, name)
			if err != nil {
				t.Fatal(err)
			}
			set[name] = &fstest.MapFile{Data: b}
		}
	}
	if len(set) != 4 {
		t.Fatalf("the last release had 4 migrations, found %d", len(set))
	}
	return set
}

// A database that ran the single migration set before the split keeps its
// data and gets the new tables when all three URLs name it.
func TestMigratingADatabaseFromBeforeTheSplitKeepsItsData(t *testing.T) {
	ctx := context.Background()
	db := testenv.NewEmptyDB(t)
	sqlDB := stdlib.OpenDBFromPool(db.Pool)
	defer sqlDB.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, preSplitMigrations(t))
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
		dbs.Directory: {"api_keys", "recipient_sets", "revoked_tokens", "sent_mails", "subscriptions", "topics", "users"},
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
