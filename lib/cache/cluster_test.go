package cache_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/lib/cache"
	"tidings/lib/testenv"
)

// TestNearCacheHearsInvalidationsAfterASlotMoveAndAFailover runs two near
// caches on a Redis Cluster of their own (3 masters, 1 replica each), where
// the invalidation channel is a shard channel on the master of its slot.
// Faults, each once the reader is known to hear invalidations: the
// channel's slot is moved to another master (its old master drops the
// subscription), then that master is killed (SIGKILL; its replica takes
// over). After each, the reader subscribes again by itself, reporting the
// gap to its watchers, and hears the writer's deletes again.
func TestNearCacheHearsInvalidationsAfterASlotMoveAndAFailover(t *testing.T) {
	ctx := context.Background()
	cl := testenv.StartRedisCluster(t, 3, 1)
	const prefix = "tidings-test:"
	channel := prefix + "cache:invalidate"
	writerRDB, readerRDB := testenv.ClusterClient(t, cl), testenv.ClusterClient(t, cl)
	writer := newCache(t, cache.Near, writerRDB, prefix)
	reader := newCache(t, cache.Near, readerRDB, prefix)
	var gaps atomic.Int64 // (re)subscriptions the reader reported
	reader.OnChange(func(keys []string) {
		if keys == nil {
			gaps.Add(1)
		}
	})

	// heard waits until the reader hears one of the writer's deletes
	// (sent again on each try: one published while the reader is not
	// subscribed is lost).
	heard := func(after string) {
		t.Helper()
		before := reader.Stats().Invalidations
		testenv.Eventually(t, "the reader to hear a delete "+after, 300, func() bool {
			_ = writer.Delete(ctx, "k")
			return reader.Stats().Invalidations > before
		})
	}
	heard("at first")

	gapsBefore := gaps.Load()
	target, err := cl.MoveSlot(ctx, channel)
	if err != nil {
		t.Fatal(err)
	}
	heard("after the slot moved")

	// A replica takes over only with data it synced from its master.
	targetClient := redis.NewClient(&redis.Options{Addr: target.Addr})
	testenv.Eventually(t, "the target's replica in sync", 600, func() bool {
		info, err := targetClient.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "state=online")
	})
	_ = targetClient.Close()
	target.Kill()
	testenv.Eventually(t, "a replica to take over the killed master's slots", 600, func() error {
		if err := cl.WaitHealthy(ctx, time.Second); err != nil {
			return err
		}
		if m, err := cl.MasterOf(ctx, channel); err != nil || m == target {
			return fmt.Errorf("the channel's master: %v (err %v), the killed one is %s", m, err, target.Addr)
		}
		return nil
	})
	heard("after the failover")
	if n := gaps.Load() - gapsBefore; n < 2 {
		t.Errorf("the reader reported %d gaps after the faults, want one at least for each of the two", n)
	}
}
