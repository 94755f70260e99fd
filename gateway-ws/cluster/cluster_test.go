package cluster

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/lib/config"
	"tidings/lib/logging"
	"tidings/lib/testenv"
)

func newRegistry(rdb redis.UniversalClient, prefix, id string, hb, ttl time.Duration, conns int) *Registry {
	return New(Config{
		Redis:    rdb,
		Prefix:   prefix,
		Settings: Settings{ID: id, Heartbeat: hb, TTL: ttl},
		Version:  "test-" + id,
		Load:     func() (int, int) { return conns, conns * 2 },
		Log:      logging.Discard(),
	})
}

// run starts r's heartbeat loop; stop ends it and returns once r has
// deregistered.
func run(t *testing.T, r *Registry, addr string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(ctx, addr)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

func ids(nodes []Node) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	return out
}

func listed(t *testing.T, r *Registry) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nodes, err := r.Nodes(ctx)
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	return ids(nodes)
}

func TestTwoRegistriesSeeEachOther(t *testing.T) {
	rds := testenv.NewRedis(t)
	a := newRegistry(rds.Client, rds.Prefix, "node-a", 100*time.Millisecond, 5*time.Second, 3)
	b := newRegistry(rds.Client, rds.Prefix, "node-b", 100*time.Millisecond, 5*time.Second, 7)
	run(t, a, "127.0.0.1:4001")
	run(t, b, "127.0.0.1:4002")

	for _, r := range []*Registry{a, b} {
		testenv.Eventually(t, r.ID()+" to list both nodes", 100, func() bool {
			return slices.Equal(listed(t, r), []string{"node-a", "node-b"})
		})
	}
	nodes, err := a.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Node{
		"node-a": {Addr: "127.0.0.1:4001", Version: "test-node-a", Connections: 3, Topics: 6},
		"node-b": {Addr: "127.0.0.1:4002", Version: "test-node-b", Connections: 7, Topics: 14},
	}
	for _, n := range nodes {
		w := want[n.ID]
		if n.Addr != w.Addr || n.Version != w.Version || n.Connections != w.Connections || n.Topics != w.Topics {
			t.Errorf("node %s: got addr %q version %q connections %d topics %d, want %q %q %d %d",
				n.ID, n.Addr, n.Version, n.Connections, n.Topics, w.Addr, w.Version, w.Connections, w.Topics)
		}
		if n.StartedAt.IsZero() || n.SeenAt.Before(n.StartedAt) {
			t.Errorf("node %s: started_at %v, seen_at %v: want a start time and a later heartbeat", n.ID, n.StartedAt, n.SeenAt)
		}
	}
}

// Fault: a replica that stops heartbeating without deregistering (as a
// killed process does) stays listed until its TTL lapses, then drops out,
// from the listing and from the id set.
func TestANodeThatStopsHeartbeatingDisappearsAfterItsTTL(t *testing.T) {
	rds := testenv.NewRedis(t)
	const ttl = 500 * time.Millisecond
	live := newRegistry(rds.Client, rds.Prefix, "live", 100*time.Millisecond, 5*time.Second, 0)
	dead := newRegistry(rds.Client, rds.Prefix, "dead", 100*time.Millisecond, ttl, 0)
	run(t, live, "127.0.0.1:4001")
	// One heartbeat and no more: the "process" died right after it.
	if err := dead.Heartbeat(context.Background()); err != nil {
		t.Fatal(err)
	}
	pttl, err := rds.Client.PTTL(context.Background(), rds.Prefix+"{nodes}:node:dead").Result()
	if err != nil || pttl <= 0 || pttl > ttl {
		t.Fatalf("the dead node's record has TTL %v (err %v), want one in (0, %v]", pttl, err, ttl)
	}
	testenv.Eventually(t, "both nodes listed", 100, func() bool {
		return slices.Equal(listed(t, live), []string{"dead", "live"})
	})
	// The TTL is Redis's: it lapses without anyone deleting the record.
	testenv.Eventually(t, "the dead node to drop out", 200, func() bool {
		return slices.Equal(listed(t, live), []string{"live"})
	})
	if ok, err := rds.Client.SIsMember(context.Background(), rds.Prefix+"{nodes}", "dead").Result(); err != nil || ok {
		t.Errorf("the dead node's id is still in the id set (err %v)", err)
	}
}

// A graceful stop (the gateway's ctx ends) removes the record at once: it
// is gone from the listing when Run returns, long before its TTL.
func TestGracefulStopDeregistersAtOnce(t *testing.T) {
	rds := testenv.NewRedis(t)
	stay := newRegistry(rds.Client, rds.Prefix, "stay", 100*time.Millisecond, time.Minute, 0)
	leave := newRegistry(rds.Client, rds.Prefix, "leave", 100*time.Millisecond, time.Minute, 0)
	run(t, stay, "127.0.0.1:4001")
	stopLeave := run(t, leave, "127.0.0.1:4002")
	testenv.Eventually(t, "both nodes listed", 100, func() bool {
		return slices.Equal(listed(t, stay), []string{"leave", "stay"})
	})
	stopLeave()
	if got := listed(t, stay); !slices.Equal(got, []string{"stay"}) {
		t.Fatalf("right after a graceful stop the nodes are %v, want [stay] (the TTL is a minute)", got)
	}
	if n, err := rds.Client.Exists(context.Background(), rds.Prefix+"{nodes}:node:leave").Result(); err != nil || n != 0 {
		t.Errorf("the stopped node's record still exists (%d, err %v)", n, err)
	}
}

// Fault: Redis is killed (SIGKILL) while a node heartbeats, and started
// again, empty, on the same port. While it is down listing fails with an
// error and the heartbeat loop keeps running; once it is back the node
// re-registers by itself.
func TestHeartbeatsSurviveARedisOutageAndResume(t *testing.T) {
	r := testenv.StartRedisServer(t)
	rdb := r.Client()
	reg := newRegistry(rdb, "tidings-cluster-outage:", "survivor", 50*time.Millisecond, 2*time.Second, 1)
	run(t, reg, "127.0.0.1:4001")
	testenv.Eventually(t, "the node listed", 100, func() bool {
		nodes, err := reg.Nodes(context.Background())
		return err == nil && slices.Equal(ids(nodes), []string{"survivor"})
	})

	r.Stop()
	if _, err := reg.Nodes(context.Background()); err == nil {
		t.Fatal("listing nodes with Redis down answered no error")
	}
	// Several heartbeats fail meanwhile; Run must keep going.
	testenv.Eventually(t, "a heartbeat to fail", 100, func() bool {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		return reg.failing
	})

	r.Start() // empty: the node's record is gone with the old process
	testenv.Eventually(t, "the node to re-register after Redis returned", 200, func() bool {
		nodes, err := reg.Nodes(context.Background())
		return err == nil && slices.Equal(ids(nodes), []string{"survivor"})
	})
}

func TestSettingsRefuseATTLNotAboveTheHeartbeat(t *testing.T) {
	t.Setenv("NODE_HEARTBEAT", "2s")
	t.Setenv("NODE_TTL", "2s")
	s := DefaultSettings()
	if err := config.Parse(&s); err != nil || s.Validate() == nil {
		t.Errorf("NODE_TTL equal to NODE_HEARTBEAT was accepted (%v)", err)
	}
	t.Setenv("NODE_TTL", "10s")
	t.Setenv("NODE_ID", "gw-1")
	s = DefaultSettings()
	err := config.Parse(&s)
	if err == nil {
		err = s.Validate()
	}
	if err != nil || s.Heartbeat != 2*time.Second || s.TTL != 10*time.Second || s.ID != "gw-1" {
		t.Errorf("got %+v, %v; want heartbeat 2s, TTL 10s, id gw-1", s, err)
	}
}

// On a Redis Cluster the heartbeat's MULTI and the listing script touch
// the id set and every record together: all of them must hash to one slot
// (CROSSSLOT otherwise).
func TestRegistryKeysShareOneSlotOnACluster(t *testing.T) {
	rds := testenv.NewRedis(t)
	if !rds.Cluster {
		t.Skip("slots exist only on a Redis Cluster (TIDINGS_TEST_REDIS_URL=redis+cluster://...)")
	}
	r := newRegistry(rds.Client, rds.Prefix, "a", time.Second, 5*time.Second, 0)
	ctx := context.Background()
	want, err := rds.Client.ClusterKeySlot(ctx, r.setKey()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "gateway-7f3k", "node-with-a-long-name-0123456789"} {
		if got, err := rds.Client.ClusterKeySlot(ctx, r.nodeKey(id)).Result(); err != nil || got != want {
			t.Errorf("record of %s is in slot %d (err %v), the id set in slot %d", id, got, err, want)
		}
	}
}
