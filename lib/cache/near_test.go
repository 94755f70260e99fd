package cache_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"tidings/lib/cache"
	"tidings/lib/testenv"
)

// TestNearCacheSeesAChangeMadeThroughAnotherProcess: two near caches, each
// with its own Redis client as two replicas would have, and process memory
// that never expires by itself (1h), so only an invalidation can make the
// reader see a change.
func TestNearCacheSeesAChangeMadeThroughAnotherProcess(t *testing.T) {
	changes := []struct {
		name   string
		change func(ctx context.Context, writer *cache.Cache) error
		want   string // what the reader's GetOrLoad answers after the change
	}{
		{"set", func(ctx context.Context, w *cache.Cache) error { return w.Set(ctx, "topic:1", []byte("v2"), 0) }, "v2"},
		{"delete", func(ctx context.Context, w *cache.Cache) error { return w.Delete(ctx, "topic:1") }, "from-db"},
	}
	for _, tc := range changes {
		t.Run(tc.name, func(t *testing.T) {
			shared := testenv.NewRedis(t)
			writer := newCache(t, cache.Near, testenv.NewRedis(t).Client, shared.Prefix)
			reader := newCache(t, cache.Near, testenv.NewRedis(t).Client, shared.Prefix)
			ctx := context.Background()

			if err := writer.Set(ctx, "topic:1", []byte("v1"), 0); err != nil {
				t.Fatal(err)
			}
			// The writer's own Set is an invalidation too: let it land
			// before the reader fills its memory, or it may drop the fill.
			eventually(t, "the reader hears the first set", func() bool { return reader.Stats().Invalidations == 1 })
			var loads atomic.Int64
			db := constant("from-db", &loads)
			// Warm the reader's memory: the second read must come from it.
			for range 2 {
				if v, err := reader.GetOrLoad(ctx, "topic:1", 0, db); err != nil || string(v) != "v1" {
					t.Fatalf("reader before the change: %q %v, want v1", v, err)
				}
			}
			if s := reader.Stats(); s.LocalHits != 1 {
				t.Fatalf("reader stats %+v: want one read from process memory before the change", s)
			}

			if err := tc.change(ctx, writer); err != nil {
				t.Fatal(err)
			}
			var last string
			eventually(t, "the reader sees the "+tc.name+" made through the writer", func() bool {
				v, err := reader.GetOrLoad(ctx, "topic:1", 0, db)
				if err != nil {
					t.Fatal(err)
				}
				last = string(v)
				return last == tc.want
			})
			if s := reader.Stats(); s.Invalidations < 2 {
				t.Fatalf("reader stats %+v: the change arrived without an invalidation", s)
			}
		})
	}
}

// TestNearCacheInvalidatesOnlyTheChangedKey: a change to one key leaves the
// other replica's other keys in memory.
func TestNearCacheInvalidatesOnlyTheChangedKey(t *testing.T) {
	shared := testenv.NewRedis(t)
	writer := newCache(t, cache.Near, testenv.NewRedis(t).Client, shared.Prefix)
	reader := newCache(t, cache.Near, testenv.NewRedis(t).Client, shared.Prefix)
	ctx := context.Background()
	var loads atomic.Int64
	for _, k := range []string{"a", "b"} {
		if _, err := reader.GetOrLoad(ctx, k, 0, constant("db-"+k, &loads)); err != nil {
			t.Fatal(err)
		}
	}
	if err := writer.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the reader drops a", func() bool { return reader.Stats().Invalidations == 1 })
	before := reader.Stats().LocalHits
	if v, ok, err := reader.Get(ctx, "b"); !ok || err != nil || string(v) != "db-b" {
		t.Fatalf("b after a's delete: %q %v %v", v, ok, err)
	}
	if reader.Stats().LocalHits != before+1 {
		t.Fatal("b was not answered from process memory after a was invalidated")
	}
	if _, ok, err := reader.Get(ctx, "a"); ok || err != nil {
		t.Fatalf("a after its delete: found=%v err=%v, want a miss", ok, err)
	}
}

// TestCacheWithRedisStoppedAnswersFromTheLoaderAndRecovers stops a
// throwaway redis-server in the middle of the test. While it is down: every
// read answers (from memory or the loader, never an error), the loader is
// used, and writes fail with ErrUnavailable instead of crashing. After it is
// started again on the same port: the near caches receive invalidations
// again, so a change through one is seen by the other.
func TestCacheWithRedisStoppedAnswersFromTheLoaderAndRecovers(t *testing.T) {
	for _, store := range []cache.Store{cache.Redis, cache.Near} {
		t.Run(string(store), func(t *testing.T) {
			srv := startRedisServer(t)
			const prefix = "tidings-test:"
			writer := newCache(t, store, srv.Client(), prefix)
			reader := newCache(t, store, srv.Client(), prefix)
			ctx := context.Background()
			var loads atomic.Int64
			db := constant("from-db", &loads)

			if err := writer.Set(ctx, "user:1", []byte("cached"), 0); err != nil {
				t.Fatal(err)
			}
			if v, err := reader.GetOrLoad(ctx, "user:1", 0, db); err != nil || string(v) != "cached" {
				t.Fatalf("with Redis up: %q %v, want cached", v, err)
			}

			srv.Stop() // the fault: Redis is gone from here on
			eventually(t, "reads with Redis stopped reach the loader", func() bool {
				v, err := reader.GetOrLoad(ctx, "user:1", 0, db)
				if err != nil {
					t.Fatalf("read with %s stopped failed: %v", srv, err)
				}
				if s := string(v); s != "cached" && s != "from-db" {
					t.Fatalf("read with %s stopped: %q", srv, s)
				}
				return string(v) == "from-db"
			})
			if v, err := reader.GetOrLoad(ctx, "never-cached", 0, db); err != nil || string(v) != "from-db" {
				t.Fatalf("new key with Redis stopped: %q %v, want from-db", v, err)
			}
			if err := writer.Set(ctx, "user:1", []byte("x"), 0); !errors.Is(err, cache.ErrUnavailable) {
				t.Fatalf("Set with Redis stopped: %v, want ErrUnavailable", err)
			}
			if err := writer.Delete(ctx, "user:1"); !errors.Is(err, cache.ErrUnavailable) {
				t.Fatalf("Delete with Redis stopped: %v, want ErrUnavailable", err)
			}

			srv.Start() // Redis is back, empty: nothing was persisted
			eventually(t, "both caches use Redis again", func() bool {
				return writer.Live() && reader.Live() && writer.Set(ctx, "user:1", []byte("v-after"), 0) == nil
			})
			// Warm the reader again, then change through the writer.
			eventually(t, "the reader reads what the writer set after the restart", func() bool {
				v, _ := reader.GetOrLoad(ctx, "user:1", 0, db)
				return string(v) == "v-after"
			})
			if err := writer.Set(ctx, "user:1", []byte("v-final"), 0); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the reader sees a change made after the restart", func() bool {
				v, _ := reader.GetOrLoad(ctx, "user:1", 0, db)
				return string(v) == "v-final"
			})
		})
	}
}
