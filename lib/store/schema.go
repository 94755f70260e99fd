package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"tidings/lib/config"
	"tidings/lib/logging"
)

//go:embed migrations
var migrations embed.FS

// Schema is one of tidings's three databases: its migrations and the table
// that records which of them were applied. Each has its own table, so the
// three may live in one database or in three.
type Schema struct {
	Name  string // directory, persist or counter
	table string // goose's version table
}

// The three schemas. The directory keeps goose's default table: a database
// from before the split has its history there.
var (
	Directory = Schema{Name: "directory", table: "goose_db_version"}    // users, topics, subscriptions, sent mails
	Persist   = Schema{Name: "persist", table: "goose_persist_version"} // notifications, deliveries, the ack outbox
	Counter   = Schema{Name: "counter", table: "goose_counter_version"} // unread counters, pending increments, applied acks
	Schemas   = []Schema{Directory, Persist, Counter}
)

// Migrations returns the schema's embedded migration files.
func (s Schema) Migrations() fs.FS {
	dir, _ := fs.Sub(migrations, "migrations/"+s.Name)
	return dir
}

// Migrate applies every pending migration of the schema and logs each to
// log (nil: no logs). A PostgreSQL session lock makes concurrent callers
// (several replicas starting at once) wait for each other.
func (s Schema) Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, s.Migrations(),
		goose.WithSessionLocker(locker), goose.WithTableName(s.table))
	if err != nil {
		return fmt.Errorf("%s migrations: %w", s.Name, err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", s.Name, err)
	}
	for _, r := range results {
		logging.Or(log).Info("migration applied", "schema", s.Name, "version", r.Source.Version, "file", r.Source.Path)
	}
	return nil
}

// DBs are pools on tidings's three databases. Where two URLs are the same
// the pools are the same.
type DBs struct {
	Directory *pgxpool.Pool // users, topics, subscriptions, sent mails
	Persist   *pgxpool.Pool // the persist participant's
	Counter   *pgxpool.Pool // the counter participant's
}

// Single is one database as all three, as when only DATABASE_URL is set.
func Single(pool *pgxpool.Pool) DBs { return DBs{Directory: pool, Persist: pool, Counter: pool} }

// NewDBs returns pools on the three databases (see NewPool: they connect
// lazily). On error nothing is left open.
func NewDBs(ctx context.Context, urls config.Databases) (DBs, error) {
	pools := map[string]*pgxpool.Pool{}
	open := func(env, url string) (*pgxpool.Pool, error) {
		if p, ok := pools[url]; ok {
			return p, nil
		}
		p, err := NewPool(ctx, url)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", env, err)
		}
		pools[url] = p
		return p, nil
	}
	var d DBs
	var errs [3]error
	d.Directory, errs[0] = open("DATABASE_URL", urls.Directory)
	d.Persist, errs[1] = open("PERSIST_DATABASE_URL", urls.Persist)
	d.Counter, errs[2] = open("COUNTER_DATABASE_URL", urls.Counter)
	if err := errors.Join(errs[:]...); err != nil {
		for _, p := range pools {
			p.Close()
		}
		return DBs{}, err
	}
	return d, nil
}

// Of returns the pool of a schema.
func (d DBs) Of(s Schema) *pgxpool.Pool {
	switch s {
	case Persist:
		return d.Persist
	case Counter:
		return d.Counter
	}
	return d.Directory
}

// Migrate applies every schema's pending migrations to its database.
func (d DBs) Migrate(ctx context.Context, log *slog.Logger) error {
	for _, s := range Schemas {
		if err := s.Migrate(ctx, d.Of(s), log); err != nil {
			return err
		}
	}
	return nil
}

// Close closes every pool once.
func (d DBs) Close() {
	seen := map[*pgxpool.Pool]bool{}
	for _, p := range []*pgxpool.Pool{d.Directory, d.Persist, d.Counter} {
		if p != nil && !seen[p] {
			seen[p] = true
			p.Close()
		}
	}
}
