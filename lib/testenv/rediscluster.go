package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/infra/proc"
	"tidings/lib/config"
)

// StartRedisCluster starts a throwaway Redis Cluster of its own for t
// (proc.StartRedisCluster: masters, each with replicas, cluster-node-timeout
// proc.RedisClusterNodeTimeout), so a test can move its slots or kill its
// nodes; it is stopped when t ends. It returns once every replica has
// synced with its master: a replica that never did refuses to take over
// from a dead one.
func StartRedisCluster(t testing.TB, masters, replicas int) *proc.RedisCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := proc.StartRedisCluster(ctx, t.TempDir(), masters, replicas)
	if err != nil {
		t.Fatalf("start a Redis Cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	err = proc.WaitFor(ctx, 60*time.Second, func(ctx context.Context) error {
		for _, n := range c.Nodes {
			if err := synced(ctx, n.Addr); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("replicas of the Redis Cluster: %v", err)
	}
	return c
}

// synced says whether the node at addr is a master or a replica whose
// link to its master is up.
func synced(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if strings.Contains(info, "role:slave") && !strings.Contains(info, "master_link_status:up") {
		return fmt.Errorf("replica %s has not synced with its master yet", addr)
	}
	return nil
}

// ClusterClient is a client of c, closed when t ends.
func ClusterClient(t testing.TB, c *proc.RedisCluster) *redis.ClusterClient {
	t.Helper()
	rc, err := config.ParseRedis(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	client := rc.Client().(*redis.ClusterClient)
	t.Cleanup(func() { _ = client.Close() })
	return client
}
