package cache_test

import (
	"context"
	"sync"
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

// keysMatching lists the keys matching pattern on the test Redis: on each
// master of a cluster, whose KEYS only knows its own.
func keysMatching(t testing.TB, r *testenv.Redis, pattern string) []string {
	t.Helper()
	keys, err := testenv.Keys(context.Background(), r.Client, pattern)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// channelsMatching lists the channels matching pattern that someone
// subscribes to: shard channels on each master of a cluster (SSUBSCRIBE),
// plain ones on one server.
func channelsMatching(t testing.TB, r *testenv.Redis, pattern string) []string {
	t.Helper()
	return onEachMaster(t, r, func(ctx context.Context, c *redis.Client) ([]string, error) {
		if r.Cluster {
			return c.PubSubShardChannels(ctx, pattern).Result()
		}
		return c.PubSubChannels(ctx, pattern).Result()
	})
}

// onEachMaster gathers what list returns on each master of a cluster, or
// on the one server.
func onEachMaster(t testing.TB, r *testenv.Redis, list func(ctx context.Context, c *redis.Client) ([]string, error)) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var out []string
	add := func(ctx context.Context, c *redis.Client) error {
		got, err := list(ctx, c)
		mu.Lock()
		out = append(out, got...)
		mu.Unlock()
		return err
	}
	var err error
	switch c := r.Client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, add)
	case *redis.Client:
		err = add(ctx, c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}
