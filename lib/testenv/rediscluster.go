package testenv

import (
	"context"
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
// synced with its master (proc's WaitHealthy): a replica that never did
// refuses to take over from a dead one.
func StartRedisCluster(t testing.TB, masters, replicas int) *proc.RedisCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := proc.StartRedisCluster(ctx, t.TempDir(), masters, replicas)
	if err != nil {
		t.Fatalf("start a Redis Cluster: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
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
