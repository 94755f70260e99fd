package cache_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tidings/lib/cache"
	"tidings/lib/config"
	"tidings/lib/testenv"
)

func TestEveryStoreReturnsWhatWasSetAndForgetsWhatWasDeleted(t *testing.T) {
	forEachStore(t, func(t *testing.T, c *cache.Cache) {
		ctx := context.Background()
		if _, ok, err := c.Get(ctx, "k"); ok || err != nil {
			t.Fatalf("Get of a key never set: found=%v err=%v, want a plain miss", ok, err)
		}
		if err := c.Set(ctx, "k", []byte("v1"), 0); err != nil {
			t.Fatal(err)
		}
		// Twice: the first read of a near cache may come from Redis,
		// the second from memory.
		for range 2 {
			if v, ok, err := c.Get(ctx, "k"); !ok || err != nil || string(v) != "v1" {
				t.Fatalf("Get after Set: %q found=%v err=%v, want v1", v, ok, err)
			}
		}
		if err := c.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if v, ok, err := c.Get(ctx, "k"); ok || err != nil {
			t.Fatalf("Get after Delete: %q found=%v err=%v, want a miss", v, ok, err)
		}
	})
}

func TestRedisKeysAndChannelStartWithThePrefixAndKeysCarryTheTTL(t *testing.T) {
	r := testenv.NewRedis(t)
	c := newCache(t, cache.Near, r.Client, r.Prefix)
	ctx := context.Background()
	// A name no other run writes: the Redis is shared with other packages'
	// tests and benchmarks, whose keys may end the same way.
	name := "user:" + rand.Text()
	if err := c.Set(ctx, name, []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	keys := keysMatching(t, r, "*"+name)
	if len(keys) != 1 || keys[0] != r.Prefix+"cache:"+name {
		t.Fatalf("keys ending in %s: %v, want only %q", name, keys, r.Prefix+"cache:"+name)
	}
	ttl, err := r.Client.PTTL(ctx, keys[0]).Result()
	if err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL %s = %v (%v), want in (0, 1m]", keys[0], ttl, err)
	}
	channels := channelsMatching(t, r, r.Prefix+"*")
	if len(channels) != 1 || channels[0] != r.Prefix+"cache:invalidate" {
		t.Fatalf("channels under the prefix: %v, want only %q", channels, r.Prefix+"cache:invalidate")
	}
}

func TestMemoryEntriesExpireAfterTheirTTL(t *testing.T) {
	c := newCache(t, cache.Memory, nil, "")
	ctx := context.Background()
	if err := c.Set(ctx, "short", []byte("v"), 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "long", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the short-lived entry expires", 100, func() bool {
		_, ok, _ := c.Get(ctx, "short")
		return !ok
	})
	if _, ok, _ := c.Get(ctx, "long"); !ok {
		t.Fatal("the entry with a 1h TTL is gone too")
	}
}

func TestGetOrLoadCallsTheLoaderOnceForConcurrentMissesOfOneKey(t *testing.T) {
	const callers = 16
	forEachStore(t, func(t *testing.T, c *cache.Cache) {
		var calls atomic.Int64
		release := make(chan struct{})
		load := func(context.Context) ([]byte, error) {
			calls.Add(1)
			<-release
			return []byte("loaded"), nil
		}
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for range callers {
			wg.Go(func() {
				v, err := c.GetOrLoad(context.Background(), "hot", 0, load)
				if err == nil && string(v) != "loaded" {
					err = fmt.Errorf("got %q, want loaded", v)
				}
				errs <- err
			})
		}
		// The loader is held until every caller is waiting on a load
		// (or, were loads not shared, inside its own loader call), so
		// all of them miss at once.
		testenv.Eventually(t, "every caller waits for the load", 100, func() bool {
			return c.Stats().Waiting == callers || calls.Load() == callers
		})
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("%d concurrent misses called the loader %d times, want 1", callers, n)
		}
		v, err := c.GetOrLoad(context.Background(), "hot", 0, load)
		if err != nil || string(v) != "loaded" || calls.Load() != 1 {
			t.Fatalf("read after the load: %q %v, loader calls %d; want the cached value and no new call", v, err, calls.Load())
		}
	})
}

func TestGetOrLoadReturnsALoaderErrorAndCachesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, c *cache.Cache) {
		ctx := context.Background()
		notFound := errors.New("no such user")
		_, err := c.GetOrLoad(ctx, "user:1", 0, func(context.Context) ([]byte, error) { return nil, notFound })
		if !errors.Is(err, notFound) {
			t.Fatalf("GetOrLoad error %v, want the loader's", err)
		}
		var calls atomic.Int64
		v, err := c.GetOrLoad(ctx, "user:1", 0, constant("found", &calls))
		if err != nil || string(v) != "found" || calls.Load() != 1 {
			t.Fatalf("next read: %q %v after %d loads; want a fresh load", v, err, calls.Load())
		}
	})
}

func TestTypedCachesAStructUnderItsNamespace(t *testing.T) {
	type user struct {
		ID    int64  `json:"id"`
		Email string `json:"email"`
	}
	r := testenv.NewRedis(t)
	c := newCache(t, cache.Near, r.Client, r.Prefix)
	users := cache.Of[user](c, "user")
	ctx := context.Background()
	loads := 0
	load := func(context.Context) (user, error) {
		loads++
		return user{ID: 7, Email: "a@example.com"}, nil
	}
	for range 2 {
		u, err := users.GetOrLoad(ctx, "7", time.Minute, load)
		if err != nil || u != (user{7, "a@example.com"}) {
			t.Fatalf("GetOrLoad: %+v %v", u, err)
		}
	}
	if loads != 1 {
		t.Fatalf("two reads loaded %d times, want 1", loads)
	}
	if raw, err := r.Client.Get(ctx, r.Prefix+"cache:user:7").Result(); err != nil || raw != `{"id":7,"email":"a@example.com"}` {
		t.Fatalf("Redis holds %q (%v), want the JSON user", raw, err)
	}
	if err := users.Delete(ctx, "7"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := users.Get(ctx, "7"); ok || err != nil {
		t.Fatalf("Get after Delete: found=%v err=%v", ok, err)
	}
}

func TestConfigIsReadFromTheEnvironmentOverItsDefaults(t *testing.T) {
	parse := func() (cache.Config, error) {
		cfg := cache.DefaultConfig()
		cfg.Prefix = "p:"
		if err := config.Parse(&cfg); err != nil {
			return cfg, err
		}
		return cfg, cfg.Validate()
	}
	t.Setenv("CACHE_STORE", "redis")
	t.Setenv("CACHE_TTL", "90s")
	t.Setenv("CACHE_LOCAL_TTL", "5")
	cfg, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store != cache.Redis || cfg.TTL != 90*time.Second || cfg.LocalTTL != 5*time.Second || cfg.Prefix != "p:" {
		t.Fatalf("config %+v", cfg)
	}
	t.Setenv("CACHE_STORE", "")
	if cfg, err := parse(); err != nil || cfg.Store != cache.Near {
		t.Fatalf("default store %q (%v), want near", cfg.Store, err)
	}
	t.Setenv("CACHE_STORE", "disk")
	if _, err := parse(); err == nil {
		t.Fatal("CACHE_STORE=disk accepted")
	}
	t.Setenv("CACHE_STORE", "near")
	if err := (cache.Config{Store: cache.Near}).Validate(); err == nil {
		t.Fatal("a near cache without a Redis prefix was accepted")
	}
}

// CACHE_MAX_ENTRIES=0 is the default; a negative value is refused, both
// when the environment is checked and by New, rather than quietly replaced.
func TestMaxEntriesZeroIsTheDefaultAndNegativeIsRefused(t *testing.T) {
	t.Setenv("CACHE_MAX_ENTRIES", "0")
	cfg := cache.DefaultConfig()
	if err := config.Parse(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.Prefix = cache.Memory, "p:"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("CACHE_MAX_ENTRIES=0 refused: %v", err)
	}
	c, err := cache.New(cfg, nil)
	if err != nil {
		t.Fatalf("New with MaxEntries 0: %v", err)
	}
	_ = c.Close()

	t.Setenv("CACHE_MAX_ENTRIES", "-1")
	cfg = cache.DefaultConfig()
	if err := config.Parse(&cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Prefix = "p:"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "CACHE_MAX_ENTRIES") {
		t.Fatalf("CACHE_MAX_ENTRIES=-1: %v, want an error naming it", err)
	}
	if c, err := cache.New(cache.Config{Store: cache.Memory, MaxEntries: -1}, nil); err == nil {
		_ = c.Close()
		t.Fatal("New with MaxEntries -1 succeeded")
	}
}

func TestGetOrLoadTurnsALoaderPanicIntoAnError(t *testing.T) {
	c := newCache(t, cache.Memory, nil, "")
	_, err := c.GetOrLoad(context.Background(), "k", 0, func(context.Context) ([]byte, error) { panic("loader bug") })
	if err == nil || !strings.Contains(err.Error(), "loader bug") {
		t.Fatalf("GetOrLoad with a panicking loader: %v, want an error naming the panic", err)
	}
}

func TestChangingASetOrReturnedSliceLeavesTheCachedValueAlone(t *testing.T) {
	forEachStore(t, func(t *testing.T, c *cache.Cache) {
		ctx := context.Background()
		val := []byte("abc")
		if err := c.Set(ctx, "k", val, 0); err != nil {
			t.Fatal(err)
		}
		val[0] = 'X'
		for range 2 { // the second read of a near cache comes from memory
			got, _, _ := c.Get(ctx, "k")
			if string(got) != "abc" {
				t.Fatalf("Get: %q, want abc", got)
			}
			got[0] = 'Y'
		}
	})
}

func TestEmptyValuesAreFound(t *testing.T) {
	forEachStore(t, func(t *testing.T, c *cache.Cache) {
		ctx := context.Background()
		if err := c.Set(ctx, "empty", nil, 0); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := c.Get(ctx, "empty"); !ok || err != nil {
			t.Fatalf("Get of an empty value: found=%v err=%v, want found", ok, err)
		}
	})
}
