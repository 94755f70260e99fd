package cache_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"tidings/lib/cache"
	"tidings/lib/testenv"
)

// TestOnChangeHearsEveryChangeAndEveryGap: a near cache's watcher hears the
// keys another process deletes (not those it sets), and, after Redis was stopped and started
// again (the fault, injected once both caches are up), that anything may
// have changed meanwhile.
func TestOnChangeHearsEveryChangeAndEveryGap(t *testing.T) {
	srv := testenv.StartRedisServer(t)
	const prefix = "tidings-test:"
	writer := newCache(t, cache.Near, srv.Client(), prefix)
	watched := newCache(t, cache.Near, srv.Client(), prefix)
	heard := make(chan []string, 64)
	if !watched.OnChange(func(keys []string) { heard <- keys }) {
		t.Fatal("OnChange on a near cache reported false")
	}
	ctx := context.Background()
	// next returns the next change heard that is not a gap, or a gap when
	// gap is set; at most 64 others are skipped.
	next := func(gap bool) []string {
		t.Helper()
		for range 64 {
			select {
			case keys := <-heard:
				if (keys == nil) == gap {
					return keys
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("nothing heard within 10s (waiting for a gap: %v)", gap)
			}
		}
		t.Fatal("64 unrelated changes heard")
		return nil
	}

	if err := writer.Delete(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if got := next(false); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("heard %q, want [a b]", got)
	}
	// A Set (what a load stores) is not reported; the Delete after it is.
	if err := writer.Set(ctx, "c", []byte("1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := writer.Delete(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if got := next(false); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("heard %q, want [c]", got)
	}

	srv.Stop()
	srv.Start()
	next(true)

	for _, store := range []cache.Store{cache.Memory, cache.Redis} {
		if newCache(t, store, srv.Client(), prefix).OnChange(func([]string) {}) {
			t.Errorf("OnChange on the %s store reported true; it hears nobody", store)
		}
	}
}
