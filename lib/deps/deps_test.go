package deps_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"tidings/lib/cache"
	"tidings/lib/config"
	"tidings/lib/deps"
	"tidings/lib/testenv"
)

// TestOpenBuildsWorkingDependenciesUnderTheirNames: the pool, the Redis
// client, the cache and the directory Open returns all answer, and the two
// Redis clients carry the names operators tell deployments apart by.
func TestOpenBuildsWorkingDependenciesUnderTheirNames(t *testing.T) {
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := deps.Open(ctx, deps.Config{
		Databases: db.URLs(), RedisURL: rd.URL, RedisPrefix: rd.Prefix, ClientName: "deps-test",
		Cache: cache.Config{Store: cache.Near},
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer d.Close()
	if err := d.DBs.Directory.Ping(ctx); err != nil {
		t.Fatalf("pool does not answer: %v", err)
	}
	if err := d.Redis.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis client does not answer: %v", err)
	}
	if got := d.Cache.Store(); got != cache.Near {
		t.Fatalf("cache store = %q, want near", got)
	}
	if _, err := d.Directory.TopicOwner(ctx, 1); err == nil {
		t.Fatal("directory found an owner for a topic that does not exist")
	}
	list, err := rd.Client.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"deps-test:" + rd.Prefix, "deps-test-cache:" + rd.Prefix} {
		if !strings.Contains(list, " name="+name+" ") {
			t.Errorf("no Redis connection named %q in CLIENT LIST:\n%s", name, list)
		}
	}
}

// TestOpenRefusesABadRedisURL: a configuration error is reported, and
// nothing is left open.
func TestOpenRefusesABadRedisURL(t *testing.T) {
	_, err := deps.Open(context.Background(), deps.Config{Databases: config.Databases{Directory: "postgres://127.0.0.1/x"}, RedisURL: "nonsense://"})
	if err == nil || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Fatalf("Open with a bad Redis URL: err = %v, want one naming REDIS_URL", err)
	}
}
