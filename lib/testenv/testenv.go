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
	"strings"
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

// NewDB creates a database for t from a migrated template and drops it when
// t ends.
func NewDB(t testing.TB) *DB {
	t.Helper()
	return newDB(t, AdminURL())
}

// newDB creates a database for t on the server of adminURL, a URL allowed
// to create databases, from a migrated template it keeps there.
func newDB(t testing.TB, adminURL string) *DB {
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
	tmpl, err := ensureTemplate(ctx, admin, adminURL)
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

// ensureTemplate creates the template for the current migrations once; its
// name carries a hash of them, so a changed migration gets a new template.
func ensureTemplate(ctx context.Context, admin *pgx.Conn, adminURL string) (string, error) {
	name := "tidings_test_tpl_" + migrationsHash()[:12]
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
	err = store.Migrate(ctx, pool, nil)
	pool.Close()
	if err != nil {
		return "", err
	}
	// Renamed only when complete, so a crash never leaves a half template.
	_, err = admin.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %s RENAME TO %s`, building, name))
	return name, err
}

func migrationsHash() string {
	h := sha256.New()
	_ = fs.WalkDir(store.Migrations(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(store.Migrations(), path)
		h.Write([]byte(path))
		h.Write(b)
		return err
	})
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
	Client *redis.Client
	Prefix string
	URL    string
}

// NewRedis connects to the test Redis server, failing t if it is not up.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	opts, err := config.RedisOptions(RedisURL())
	if err != nil {
		t.Fatalf("parse %s: %v", RedisURL(), err)
	}
	client := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("connect to Redis at %s: %v", RedisURL(), err)
	}
	r := &Redis{Client: client, Prefix: "tidings-test:" + uniqueName() + ":", URL: RedisURL()}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := client.Scan(ctx, 0, r.Prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
		client.Close()
	})
	return r
}

// uniqueName is a random name part for a database, key prefix or
// interface: lower case, so that PostgreSQL and ip take it as it is.
func uniqueName() string { return strings.ToLower(rand.Text()) }
