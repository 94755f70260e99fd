package cache_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/lib/cache"
	"tidings/lib/testenv"
)

// newCache builds a cache for t, closed when t ends. The short retry and
// ping intervals only make outages end sooner; no test asserts on time.
func newCache(t testing.TB, store cache.Store, rdb redis.UniversalClient, prefix string) *cache.Cache {
	t.Helper()
	c, err := cache.New(cache.Config{
		Store:        store,
		Prefix:       prefix,
		TTL:          time.Hour,
		LocalTTL:     time.Hour, // so only an invalidation can make a near cache forget
		RedisTimeout: time.Second,
		RedisRetry:   20 * time.Millisecond,
		PingInterval: 200 * time.Millisecond,
	}, rdb)
	if err != nil {
		t.Fatalf("new %s cache: %v", store, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// constant is a loader that returns v and counts its calls.
func constant(v string, calls *atomic.Int64) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		calls.Add(1)
		return []byte(v), nil
	}
}

var stores = []cache.Store{cache.Memory, cache.Redis, cache.Near}

// forEachStore runs test as a subtest per store, each on a cache of its
// own over a Redis prefix of its own.
func forEachStore(t *testing.T, test func(t *testing.T, c *cache.Cache)) {
	for _, store := range stores {
		t.Run(string(store), func(t *testing.T) {
			r := testenv.NewRedis(t)
			test(t, newCache(t, store, r.Client, r.Prefix))
		})
	}
}
