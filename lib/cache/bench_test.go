package cache_test

import (
	"context"
	"testing"

	"tidings/lib/testenv"
)

// BenchmarkGetHit is the cost of a read that finds its key, per store. The
// Zipf-skewed workload with misses is infra/bench/cache.
func BenchmarkGetHit(b *testing.B) {
	for _, store := range stores {
		b.Run(string(store), func(b *testing.B) {
			r := testenv.NewRedis(b)
			c := newCache(b, store, r.Client, r.Prefix)
			ctx := context.Background()
			if err := c.Set(ctx, "k", make([]byte, 256), 0); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, ok, err := c.Get(ctx, "k"); !ok || err != nil {
					b.Fatalf("miss: %v", err)
				}
			}
		})
	}
}
