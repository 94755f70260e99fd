package cache_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"

	"tidings/lib/cache"
	"tidings/lib/store"
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
			testenv.Eventually(t, "the reader hears the first set", 100, func() bool { return reader.Stats().Invalidations == 1 })
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
			testenv.Eventually(t, "the reader sees the "+tc.name+" made through the writer", 100, func() bool {
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
	testenv.Eventually(t, "the reader drops a", 100, func() bool { return reader.Stats().Invalidations == 1 })
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

// TestCacheWithRedisStoppedAnswersFromTheDatabaseAndRecovers stops a
// throwaway redis-server in the middle of the test, with a user cached that
// has since changed in PostgreSQL. While Redis is down: every read answers
// (from memory or the database, never an error), reads reach the database
// and see the change, and writes fail with ErrUnavailable instead of
// crashing. After Redis is started again on the same port: the caches use
// it again, and a change made through one is seen by the other.
func TestCacheWithRedisStoppedAnswersFromTheDatabaseAndRecovers(t *testing.T) {
	for _, kind := range []cache.Store{cache.Redis, cache.Near} {
		t.Run(string(kind), func(t *testing.T) {
			db := testenv.NewDB(t)
			srv := testenv.StartRedisServer(t)
			const prefix = "tidings-test:"
			writer := cache.Of[store.User](newCache(t, kind, srv.Client(), prefix), "user")
			readerCache := newCache(t, kind, srv.Client(), prefix)
			reader := cache.Of[store.User](readerCache, "user")
			ctx := context.Background()

			u, err := store.CreateUser(ctx, db.Pool, "ada@example.com", "Ada", "not-a-hash", "")
			if err != nil {
				t.Fatal(err)
			}
			key := strconv.FormatInt(u.ID, 10)
			fromDB := func(ctx context.Context) (store.User, error) { return store.UserByID(ctx, db.Pool, u.ID) }
			name := func() string {
				t.Helper()
				got, err := reader.GetOrLoad(ctx, key, 0, fromDB)
				if err != nil {
					t.Fatalf("read of user %s with %s: %v", key, srv, err)
				}
				return got.Name
			}
			for range 2 {
				if n := name(); n != "Ada" {
					t.Fatalf("with Redis up: name %q, want Ada", n)
				}
			}
			if _, err := db.Pool.Exec(ctx, `UPDATE users SET name = 'Ada L.' WHERE id = $1`, u.ID); err != nil {
				t.Fatal(err)
			}

			srv.Stop() // the fault: Redis is gone from here on
			testenv.Eventually(t, "reads with Redis stopped reach the database", 100, func() bool {
				n := name()
				if n != "Ada" && n != "Ada L." {
					t.Fatalf("read with %s stopped: name %q", srv, n)
				}
				return n == "Ada L."
			})
			if s := readerCache.Stats(); s.Loads < 2 || s.RedisErrors == 0 {
				t.Fatalf("reader stats %+v: want loads from the database and failed Redis calls", s)
			}
			if err := writer.Set(ctx, key, u, 0); !errors.Is(err, cache.ErrUnavailable) {
				t.Fatalf("Set with Redis stopped: %v, want ErrUnavailable", err)
			}
			if err := writer.Delete(ctx, key); !errors.Is(err, cache.ErrUnavailable) {
				t.Fatalf("Delete with Redis stopped: %v, want ErrUnavailable", err)
			}

			srv.Start() // Redis is back, empty: nothing was persisted
			renamed := u
			renamed.Name = "Ada Lovelace"
			testenv.Eventually(t, "the writer stores in Redis again", 100, func() bool {
				return writer.Set(ctx, key, renamed, 0) == nil
			})
			testenv.Eventually(t, "the reader reads what the writer stored after the restart", 100, func() bool {
				return name() == "Ada Lovelace"
			})
			if kind == cache.Near {
				// Make the reader hold the value in memory again, so only a
				// working invalidation can show it the next change.
				testenv.Eventually(t, "the reader answers from memory again", 100, func() bool {
					before := readerCache.Stats().LocalHits
					return name() == "Ada Lovelace" && readerCache.Stats().LocalHits > before
				})
			}
			renamed.Name = "Countess of Lovelace"
			if err := writer.Set(ctx, key, renamed, 0); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, "the reader sees a change made through the writer after the restart", 100, func() bool {
				return name() == "Countess of Lovelace"
			})
		})
	}
}

// TestDeletingKeysOfManySlotsInvalidatesThemAllElsewhere: one Delete of
// keys that a Redis Cluster spreads over several slots (checked, on a
// cluster) removes them all from Redis and from the other replica's
// memory, which then loads each again.
func TestDeletingKeysOfManySlotsInvalidatesThemAllElsewhere(t *testing.T) {
	shared := testenv.NewRedis(t)
	writer := newCache(t, cache.Near, testenv.NewRedis(t).Client, shared.Prefix)
	reader := newCache(t, cache.Near, testenv.NewRedis(t).Client, shared.Prefix)
	ctx := context.Background()
	keys := make([]string, 16)
	slots := map[int64]bool{}
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
		if shared.Cluster {
			slot, err := shared.Client.ClusterKeySlot(ctx, shared.Prefix+"cache:"+keys[i]).Result()
			if err != nil {
				t.Fatal(err)
			}
			slots[slot] = true
		}
	}
	if shared.Cluster && len(slots) < 2 {
		t.Fatalf("the %d keys are all in one slot; the test needs several", len(keys))
	}
	var loads atomic.Int64
	for _, k := range keys {
		if _, err := reader.GetOrLoad(ctx, k, 0, constant("old", &loads)); err != nil {
			t.Fatal(err)
		}
	}
	if err := writer.Delete(ctx, keys...); err != nil {
		t.Fatalf("delete %d keys: %v", len(keys), err)
	}
	testenv.Eventually(t, "the reader drops every key", 100, func() bool {
		return reader.Stats().Invalidations == uint64(len(keys))
	})
	if left := keysMatching(t, shared, shared.Prefix+"cache:*"); len(left) != 0 {
		t.Errorf("keys left in Redis after the delete: %v", left)
	}
	loads.Store(0)
	for _, k := range keys {
		if v, err := reader.GetOrLoad(ctx, k, 0, constant("new", &loads)); err != nil || string(v) != "new" {
			t.Fatalf("%s after its delete: %q (%v), want new", k, v, err)
		}
	}
	if loads.Load() != int64(len(keys)) {
		t.Errorf("%d loads after the delete, want %d", loads.Load(), len(keys))
	}
}
