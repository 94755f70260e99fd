// Package testenv gives tests their own PostgreSQL database and Redis key
// prefix on the real servers, so they never touch a developer's data and
// clean up after themselves.
//
// TIDINGS_TEST_ADMIN_URL (a PostgreSQL URL allowed to create databases) and
// TIDINGS_TEST_REDIS_URL override the loopback defaults.
package testenv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"tidings/lib/config"
	"tidings/lib/store"
)

// DB is a fresh, migrated database for one test.
type DB struct {
	Pool *pgxpool.Pool
	URL  string
}

// DBs are the database as all three of tidings's (store.DBs): directory,
// persist and counter in one, as when only DATABASE_URL is set.
func (d *DB) DBs() store.DBs { return store.Single(d.Pool) }

// URLs are the database's URL as all three of tidings's.
func (d *DB) URLs() config.Databases {
	return config.Databases{Directory: d.URL, Persist: d.URL, Counter: d.URL}
}

// NewDB creates a database for t holding every schema (directory, persist
// and counter in one) from a migrated template and drops it when t ends.
func NewDB(t testing.TB) *DB {
	t.Helper()
	return newDB(t, AdminURL(), store.Schemas...)
}

// NewEmptyDB creates a database for t with no migrations applied.
func NewEmptyDB(t testing.TB) *DB {
	t.Helper()
	return newDB(t, AdminURL())
}

// Databases are a test's three databases, each its own, as in production
// with PERSIST_DATABASE_URL and COUNTER_DATABASE_URL set: no query can
// reach another participant's tables.
type Databases struct {
	Directory, Persist, Counter *DB
}

// NewDatabases creates three databases for t, each migrated with its own
// schema only, and drops them when t ends.
func NewDatabases(t testing.TB) *Databases {
	t.Helper()
	return &Databases{
		Directory: newDB(t, AdminURL(), store.Directory),
		Persist:   newDB(t, AdminURL(), store.Persist),
		Counter:   newDB(t, AdminURL(), store.Counter),
	}
}

// DBs are the pools on the three databases.
func (d *Databases) DBs() store.DBs {
	return store.DBs{Directory: d.Directory.Pool, Persist: d.Persist.Pool, Counter: d.Counter.Pool}
}

// URLs are the three databases' URLs.
func (d *Databases) URLs() config.Databases {
	return config.Databases{Directory: d.Directory.URL, Persist: d.Persist.URL, Counter: d.Counter.URL}
}

// Snapshot is Snapshot of the three databases.
func (d *Databases) Snapshot(t testing.TB) string {
	t.Helper()
	return Snapshot(t, d.Directory.Pool) + Snapshot(t, d.Persist.Pool) + Snapshot(t, d.Counter.Pool)
}

// newDB creates a database for t on the server of adminURL, a URL allowed
// to create databases, from a template migrated with schemas it keeps there.
func newDB(t testing.TB, adminURL string, schemas ...store.Schema) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("connect to PostgreSQL at %s: %v", adminURL, err)
	}
	defer admin.Close(ctx)

	// One lock across test processes: template creation and copying must
	// not overlap, or PostgreSQL refuses the copy.
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_lock(hashtext('tidings_test_template'))`); err != nil {
		t.Fatalf("lock: %v", err)
	}
	tmpl, err := ensureTemplate(ctx, admin, adminURL, schemas)
	if err == nil {
		name := "tidings_test_" + uniqueName()
		_, err = admin.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s TEMPLATE %s`, name, tmpl))
		if err == nil {
			_, _ = admin.Exec(ctx, `SELECT pg_advisory_unlock(hashtext('tidings_test_template'))`)
			return openDB(t, adminURL, name)
		}
	}
	_, _ = admin.Exec(ctx, `SELECT pg_advisory_unlock(hashtext('tidings_test_template'))`)
	t.Fatalf("create test database: %v", err)
	return nil
}

func openDB(t testing.TB, adminURL, name string) *DB {
	u := WithDatabase(adminURL, name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := store.Open(ctx, u)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		dropDatabase(adminURL, name)
	})
	return &DB{Pool: pool, URL: u}
}

// DropDatabase removes a test database, closing any connection left on it.
func DropDatabase(name string) { dropDatabase(AdminURL(), name) }

func dropDatabase(adminURL, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return
	}
	defer admin.Close(ctx)
	_, _ = admin.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, name))
}

// ensureTemplate creates the template for the current migrations of
// schemas once; its name carries a hash of them, so a changed migration
// gets a new template.
func ensureTemplate(ctx context.Context, admin *pgx.Conn, adminURL string, schemas []store.Schema) (string, error) {
	name := "tidings_test_tpl_" + migrationsHash(schemas)[:12]
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_building"
	_, _ = admin.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %s WITH (FORCE)`, building))
	if _, err := admin.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %s`, building)); err != nil {
		return "", err
	}
	pool, err := store.Open(ctx, WithDatabase(adminURL, building))
	if err != nil {
		return "", err
	}
	for _, schema := range schemas {
		if err == nil {
			err = schema.Migrate(ctx, pool, nil)
		}
	}
	pool.Close()
	if err != nil {
		return "", err
	}
	// Renamed only when complete, so a crash never leaves a half template.
	_, err = admin.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s RENAME TO %s`, building, name))
	return name, err
}

func migrationsHash(schemas []store.Schema) string {
	h := sha256.New()
	for _, schema := range schemas {
		migrations := schema.Migrations()
		_ = fs.WalkDir(migrations, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(migrations, path)
			h.Write([]byte(schema.Name + "/" + path))
			h.Write(b)
			return err
		})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// WithDatabase returns a PostgreSQL URL with its database replaced.
func WithDatabase(raw, name string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + name
	return u.String()
}

// Redis is a client on the test Redis server and a key prefix of this
// test's own; every key under the prefix is deleted when t ends.
type Redis struct {
	Client redis.UniversalClient
	Prefix string
	URL    string
	// Cluster says the test Redis is a Redis Cluster
	// (TIDINGS_TEST_REDIS_URL=redis+cluster://...).
	Cluster bool
}

// NewRedis connects to the test Redis server, failing t if it is not up.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	rc, err := config.ParseRedis(RedisURL())
	if err != nil {
		t.Fatalf("parse %s: %v", RedisURL(), err)
	}
	client := rc.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("connect to Redis at %s: %v", RedisURL(), err)
	}
	r := &Redis{Client: client, Prefix: "tidings-test:" + uniqueName() + ":", URL: RedisURL(), Cluster: rc.IsCluster()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		DeleteKeys(ctx, client, r.Prefix)
		client.Close()
	})
	return r
}

// uniqueName is a random name part for a database, key prefix or
// interface: lower case, so that PostgreSQL and ip take it as it is.
func uniqueName() string { return strings.ToLower(rand.Text()) }

// Keys are every key matching pattern, sorted: on each master of a Redis
// Cluster (a KEYS or SCAN reaches one node only) or on the one server.
func Keys(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	}
	slices.Sort(keys)
	return keys, err
}

// DeleteKeys deletes every key starting with prefix (Keys).
func DeleteKeys(ctx context.Context, rdb redis.UniversalClient, prefix string) {
	keys, _ := Keys(ctx, rdb, prefix+"*")
	for _, k := range keys {
		rdb.Del(ctx, k)
	}
}
