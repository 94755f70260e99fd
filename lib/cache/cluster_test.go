package cache_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/infra/proc"
	"tidings/lib/cache"
	"tidings/lib/config"
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
	cl, err := proc.StartRedisCluster(ctx, t.TempDir(), 3, 1)
	if err != nil {
		t.Fatalf("start a cluster: %v", err)
	}
	t.Cleanup(cl.Stop)
	rc, err := config.ParseRedis(cl.URL())
	if err != nil {
		t.Fatal(err)
	}
	const prefix = "tidings-test:"
	channel := prefix + "cache:invalidate"
	writerRDB, readerRDB := rc.Client(), rc.Client()
	t.Cleanup(func() { _ = writerRDB.Close(); _ = readerRDB.Close() })
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

	source, err := cl.MasterOf(ctx, channel)
	if err != nil {
		t.Fatal(err)
	}
	masters, err := cl.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var target *proc.RedisNode
	for _, m := range masters {
		if m != source {
			target = m
			break
		}
	}
	gapsBefore := gaps.Load()
	moveSlot(t, channel, source, target, masters, cl.Nodes)
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

// moveSlot moves the (empty) slot of key from source to target, as
// redis-cli --cluster reshard does: importing and migrating, then the
// new owner told first, so that it takes a newer config epoch, then every
// other master.
func moveSlot(t *testing.T, key string, source, target *proc.RedisNode, masters, all []*proc.RedisNode) {
	t.Helper()
	ctx := context.Background()
	node := func(n *proc.RedisNode) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: n.Addr})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	src, dst := node(source), node(target)
	slot, err := src.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := src.ClusterCountKeysInSlot(ctx, int(slot)).Result(); err != nil || n != 0 {
		t.Fatalf("slot %d holds %d keys (%v); the move needs it empty", slot, n, err)
	}
	srcID, err := src.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	dstID, err := dst.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		c    *redis.Client
		args []any
	}{
		{dst, []any{"CLUSTER", "SETSLOT", slot, "IMPORTING", srcID}},
		{src, []any{"CLUSTER", "SETSLOT", slot, "MIGRATING", dstID}},
		{dst, []any{"CLUSTER", "SETSLOT", slot, "NODE", dstID}},
		{src, []any{"CLUSTER", "SETSLOT", slot, "NODE", dstID}},
	}
	for _, m := range masters {
		if m != source && m != target {
			steps = append(steps, struct {
				c    *redis.Client
				args []any
			}{node(m), []any{"CLUSTER", "SETSLOT", slot, "NODE", dstID}})
		}
	}
	for _, s := range steps {
		if err := s.c.Do(ctx, s.args...).Err(); err != nil {
			t.Fatalf("%v: %v", s.args, err)
		}
	}
	// Until every node, target's replicas included, has heard of the
	// move, a failover of target would not take the slot with it.
	testenv.Eventually(t, "every node to see the slot moved", 200, func() error {
		for _, n := range all {
			shards, err := node(n).ClusterShards(ctx).Result()
			if err != nil {
				return err
			}
			for _, sh := range shards {
				for _, r := range sh.Slots {
					if r.Start <= slot && slot <= r.End && !slices.ContainsFunc(sh.Nodes, func(n redis.Node) bool { return n.ID == dstID }) {
						return fmt.Errorf("%s sees slot %d in shard %v", n.Addr, slot, sh.Nodes)
					}
				}
			}
		}
		return nil
	})
}
