package proc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisClusterNodeTimeout is the cluster-node-timeout of a throwaway
// cluster: how long a master may be unreachable before its replica is
// promoted. Short, so that a test's killed master is replaced within
// seconds (production clusters keep Redis's 15 s).
const RedisClusterNodeTimeout = 2 * time.Second

// RedisCluster is a throwaway Redis Cluster on loopback: masters, each
// with its replicas, every node a redis-server of its own with the
// persistence tidings asks of Redis (RedisPersistence).
type RedisCluster struct {
	Dir   string
	Nodes []*RedisNode
}

// RedisNode is one redis-server of a RedisCluster.
type RedisNode struct {
	Addr string
	dir  string
	bin  string
	p    *Process
}

// StartRedisCluster starts masters×(1+replicas) redis-servers in dir,
// joins them with `redis-cli --cluster create` and waits until every node
// reports the cluster ok.
func StartRedisCluster(ctx context.Context, dir string, masters, replicas int) (*RedisCluster, error) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, err
	}
	c := &RedisCluster{Dir: dir}
	for i := range masters * (1 + replicas) {
		port, err := clusterPort()
		if err != nil {
			c.Stop()
			return nil, err
		}
		n := &RedisNode{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: filepath.Join(dir, fmt.Sprint("node", i)), bin: server}
		c.Nodes = append(c.Nodes, n)
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			c.Stop()
			return nil, err
		}
		if err := n.Start(ctx); err != nil {
			c.Stop()
			return nil, err
		}
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr)
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		c.Stop()
		return nil, fmt.Errorf("redis-cli --cluster create: %w: %s", err, out)
	}
	if err := c.WaitHealthy(ctx, 60*time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// clusterPort is a free loopback port whose cluster bus port (+10000) is
// free too.
func clusterPort() (int, error) {
	for range 50 {
		_, p, _ := net.SplitHostPort(FreeAddr())
		port, _ := strconv.Atoi(p)
		if port+10000 > 65535 {
			continue
		}
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000))); err == nil {
			_ = l.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port pair for a cluster node")
}

// URL is the redis+cluster:// URL naming every node as a seed.
func (c *RedisCluster) URL() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// Stop kills every node.
func (c *RedisCluster) Stop() {
	for _, n := range c.Nodes {
		n.Kill()
	}
}

// WaitHealthy waits until every running node reports cluster_state:ok and
// agrees that each slot has a master, and every running replica has
// synced with its master.
func (c *RedisCluster) WaitHealthy(ctx context.Context, limit time.Duration) error {
	return WaitFor(ctx, limit, func(ctx context.Context) error {
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			info, err := n.do(ctx, "CLUSTER", "INFO")
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
				return fmt.Errorf("%s: cluster not ok yet", n.Addr)
			}
			// A replica that has not synced with its master yet cannot
			// be promoted: a master killed now would stay failed.
			repl, err := n.do(ctx, "INFO", "replication")
			if err != nil {
				return err
			}
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return fmt.Errorf("%s: replica not synced yet", n.Addr)
			}
		}
		return nil
	})
}

// Masters are the running nodes that are masters now.
func (c *RedisCluster) Masters(ctx context.Context) ([]*RedisNode, error) {
	var masters []*RedisNode
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		role, err := n.do(ctx, "ROLE")
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(role, "[master") {
			masters = append(masters, n)
		}
	}
	return masters, nil
}

// MasterOf is the running master holding key's slot.
func (c *RedisCluster) MasterOf(ctx context.Context, key string) (*RedisNode, error) {
	var seeds []string
	for _, n := range c.Nodes {
		if n.Running() {
			seeds = append(seeds, n.Addr)
		}
	}
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: seeds})
	defer client.Close()
	master, err := client.MasterForKey(ctx, key)
	if err != nil {
		return nil, err
	}
	addr := master.Options().Addr
	for _, n := range c.Nodes {
		if n.Addr == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("%s is not a node of this cluster", addr)
}

// Start runs the node (again) on its port and waits until it answers.
func (n *RedisNode) Start(ctx context.Context) error {
	_, port, _ := net.SplitHostPort(n.Addr)
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--protected-mode", "no",
		"--save", "", "--dir", n.dir, "--loglevel", "warning",
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.Itoa(int(RedisClusterNodeTimeout.Milliseconds())),
		// A replica syncs at once, not after the default 5 s wait for
		// more replicas to share the transfer.
		"--repl-diskless-sync-delay", "0"},
		RedisPersistence...)
	p, err := Start(filepath.Join(n.dir, "server.log"), nil, nil, n.bin, args...)
	if err != nil {
		return err
	}
	n.p = p
	return WaitFor(ctx, 15*time.Second, func(ctx context.Context) error {
		_, err := n.do(ctx, "PING")
		return err
	})
}

// Kill ends the node with SIGKILL, as a crash.
func (n *RedisNode) Kill() {
	if n.p != nil {
		n.p.Stop(syscall.SIGKILL)
		n.p = nil
	}
}

// Running says whether the node was started and not killed.
func (n *RedisNode) Running() bool { return n.p != nil }

// do sends one command to this node alone and returns its answer as text.
func (n *RedisNode) do(ctx context.Context, args ...any) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	v, err := c.Do(ctx, args...).Result()
	if err != nil {
		return "", err
	}
	return fmt.Sprint(v), nil
}

// MoveSlot hands the slot of key, which must hold no key (a pub/sub
// channel's slot, say), from its master to another master, and waits until
// every running node sees the move (until then a failover of the new
// master would not take the slot with it). It returns the new master.
func (c *RedisCluster) MoveSlot(ctx context.Context, key string) (*RedisNode, error) {
	from, err := c.MasterOf(ctx, key)
	if err != nil {
		return nil, err
	}
	masters, err := c.Masters(ctx)
	if err != nil {
		return nil, err
	}
	var to *RedisNode
	for _, m := range masters {
		if m != from {
			to = m
			break
		}
	}
	if to == nil {
		return nil, fmt.Errorf("no other master to move slot of %s to", key)
	}
	return to, c.moveSlot(ctx, key, from, to, masters)
}

func (c *RedisCluster) moveSlot(ctx context.Context, key string, from, to *RedisNode, masters []*RedisNode) error {
	slot, err := from.int(ctx, "CLUSTER", "KEYSLOT", key)
	if err != nil {
		return err
	}
	if n, err := from.int(ctx, "CLUSTER", "COUNTKEYSINSLOT", slot); err != nil || n != 0 {
		return fmt.Errorf("slot %d holds %d keys (%v); MoveSlot moves empty slots only", slot, n, err)
	}
	fromID, err := from.do(ctx, "CLUSTER", "MYID")
	if err != nil {
		return err
	}
	toID, err := to.do(ctx, "CLUSTER", "MYID")
	if err != nil {
		return err
	}
	// Redis's resharding order (CLUSTER SETSLOT's documentation): the
	// importing side first, then the owner, then every other master.
	steps := []struct {
		n    *RedisNode
		args []any
	}{
		{to, []any{"CLUSTER", "SETSLOT", slot, "IMPORTING", fromID}},
		{from, []any{"CLUSTER", "SETSLOT", slot, "MIGRATING", toID}},
		{to, []any{"CLUSTER", "SETSLOT", slot, "NODE", toID}},
		{from, []any{"CLUSTER", "SETSLOT", slot, "NODE", toID}},
	}
	for _, m := range masters {
		if m != from && m != to {
			steps = append(steps, struct {
				n    *RedisNode
				args []any
			}{m, []any{"CLUSTER", "SETSLOT", slot, "NODE", toID}})
		}
	}
	for _, s := range steps {
		if _, err := s.n.do(ctx, s.args...); err != nil {
			return fmt.Errorf("%s on %s: %w", fmt.Sprint(s.args...), s.n.Addr, err)
		}
	}
	return WaitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			owner, err := n.slotOwner(ctx, slot)
			if err != nil {
				return err
			}
			if owner != to.Addr {
				return fmt.Errorf("%s sees slot %d at %s", n.Addr, slot, owner)
			}
		}
		return nil
	})
}

// slotOwner is the address of the master that n says serves slot.
func (n *RedisNode) slotOwner(ctx context.Context, slot int64) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
	defer c.Close()
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		return "", err
	}
	for _, sh := range shards {
		for _, r := range sh.Slots {
			if r.Start > slot || slot > r.End {
				continue
			}
			for _, node := range sh.Nodes {
				if node.Role == "master" {
					return net.JoinHostPort(node.IP, strconv.FormatInt(node.Port, 10)), nil
				}
			}
		}
	}
	return "", fmt.Errorf("no master serves slot %d", slot)
}

// int sends one command to this node alone and returns its integer answer.
func (n *RedisNode) int(ctx context.Context, args ...any) (int64, error) {
	c := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	return c.Do(ctx, args...).Int64()
}
