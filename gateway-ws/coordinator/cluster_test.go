package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/infra/proc"
	"tidings/lib/logging"
	"tidings/lib/notification"
	"tidings/lib/testenv"
)

// These tests start a Redis Cluster of their own (three masters, a
// replica each), whatever the test Redis is: they kill its masters.

// startCluster starts the cluster and returns it with a client on a key
// prefix of the test's own.
func startCluster(t *testing.T) (*proc.RedisCluster, *testenv.Redis) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Redis Cluster of six servers")
	}
	cluster := testenv.StartRedisCluster(t, 3, 1)
	client := testenv.ClusterClient(t, cluster)
	return cluster, &testenv.Redis{Client: client, Prefix: "tidings-test:", URL: cluster.URL(), Cluster: true}
}

// waitReplicasInSync waits until every running node but one master per
// pair is a replica that finished its sync with its master: until then a
// master counts no replica, and WAIT does not wait for one. (A killed
// master started again claims its slots until it hears of its successor.)
func waitReplicasInSync(t *testing.T, cluster *proc.RedisCluster) {
	t.Helper()
	ctx := context.Background()
	err := proc.WaitFor(ctx, time.Minute, func(ctx context.Context) error {
		masters, err := cluster.Masters(ctx)
		if err != nil {
			return err
		}
		if len(masters) != len(cluster.Nodes)/2 {
			return fmt.Errorf("%d masters", len(masters))
		}
		for _, n := range cluster.Nodes {
			if !n.Running() || slices.Contains(masters, n) {
				continue
			}
			if role := roleOf(ctx, n); len(role) < 4 || role[3] != "connected" {
				return fmt.Errorf("replica %s: role %v", n.Addr, role)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// roleOf is a node's answer to ROLE (nil when it gives none).
func roleOf(ctx context.Context, n *proc.RedisNode) []any {
	node := redis.NewClient(&redis.Options{Addr: n.Addr})
	defer node.Close()
	role, _ := node.Do(ctx, "ROLE").Slice()
	return role
}

// waitFailover waits until a replica of killed, the master of key's slot,
// took over, the cluster is healthy again, and client knows it.
func waitFailover(t *testing.T, cluster *proc.RedisCluster, client redis.UniversalClient, key string, killed *proc.RedisNode) {
	t.Helper()
	ctx := context.Background()
	err := proc.WaitFor(ctx, time.Minute, func(ctx context.Context) error {
		master, err := cluster.MasterOf(ctx, key)
		if err != nil {
			return err
		}
		if master == killed {
			return errors.New("no replica promoted yet")
		}
		if err := cluster.WaitHealthy(ctx, time.Second); err != nil {
			return err
		}
		// The test's client relearns the layout as the coordinator's
		// own does after a failed call.
		c := client.(*redis.ClusterClient)
		c.ReloadState(ctx)
		if seen, err := c.MasterForKey(ctx, key); err != nil || seen.Options().Addr != master.Addr {
			return fmt.Errorf("the client does not know the new master yet (%v)", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("failover of %s: %v", killed.Addr, err)
	}
}

// A record's hash and its open set are in one slot (create's MULTI and the
// transition script touch both), and the records of many transactions
// are spread over every shard, not kept on one.
func TestRecordsTouchOneSlotEachAndSpreadOverTheShards(t *testing.T) {
	cluster, rd := startCluster(t)
	ctx := context.Background()
	c := New(Config{Redis: rd.Client, Prefix: rd.Prefix, Log: logging.NewTo(io.Discard, "error", "test")})
	t.Cleanup(func() { _ = c.Close() })

	const n = 64
	masters := map[string]bool{}
	for i := range n {
		id := fmt.Sprint("tx-", i)
		if err := c.records.create(ctx, &Record{ID: id, State: Preparing, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		record, open := c.records.key(id), c.records.openOf(id)
		a, errA := rd.Client.ClusterKeySlot(ctx, record).Result()
		b, errB := rd.Client.ClusterKeySlot(ctx, open).Result()
		if err := errors.Join(errA, errB); err != nil || a != b {
			t.Fatalf("%s in slot %d, %s in slot %d (%v): want one slot", record, a, open, b, err)
		}
		m, err := cluster.MasterOf(ctx, record)
		if err != nil {
			t.Fatal(err)
		}
		masters[m.Addr] = true
		if i%2 == 0 {
			if err := c.records.transition(ctx, id, Preparing, Aborted); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(masters) != 3 {
		t.Errorf("the records of %d transactions are on %d masters, want all 3", n, len(masters))
	}
	if open, err := c.OpenTransactions(ctx); err != nil || open != n/2 {
		t.Errorf("%d open transactions (%v), want %d", open, err, n/2)
	}
	if stuck, err := c.records.stuck(ctx, time.Now()); err != nil || len(stuck) != n/2 {
		t.Errorf("recovery finds %d unfinished records (%v), want %d", len(stuck), err, n/2)
	}
}

// When decide returns, the replica of the record's master has the
// decision: a failover right then cannot take it back to preparing. The
// replica is kept busy (a script running) while decide runs, so that it
// applies the decision only once the script ends: a decide that did not
// wait for it would return while the replica still answers BUSY.
func TestDecisionIsOnTheReplicaWhenDecideReturns(t *testing.T) {
	cluster, rd := startCluster(t)
	ctx := context.Background()
	c := New(Config{Redis: rd.Client, Prefix: rd.Prefix, Log: logging.NewTo(io.Discard, "error", "test")})
	t.Cleanup(func() { _ = c.Close() })

	for i := range 3 {
		id := fmt.Sprint("tx-decided-", i)
		if err := c.records.create(ctx, &Record{ID: id, State: Preparing, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		replica := replicaOf(t, cluster, c.records.key(id))
		done := keepBusy(t, replica)
		if err := c.records.decide(ctx, id, 42); err != nil {
			t.Fatal(err)
		}
		var state, notification *redis.StringCmd
		_, err := replica.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.ReadOnly(ctx)
			state = p.HGet(ctx, c.records.key(id), "state")
			notification = p.HGet(ctx, c.records.key(id), "notification_id")
			return nil
		})
		<-done
		if err != nil {
			t.Fatalf("read %s on the replica when decide returned: %v", id, err)
		}
		if state.Val() != Committing || notification.Val() != "42" {
			t.Fatalf("the replica has %s %q with notification %q, want committing with 42", id, state.Val(), notification.Val())
		}
	}
}

// busyFor is how long keepBusy keeps a replica busy: well within
// redisx.ReplicaWait, so that a decide waiting for the replica sees it
// apply the decision.
const busyFor = 400 * time.Millisecond

// keepBusy runs a script on replica for busyFor and returns once the
// replica answers BUSY to other clients; the channel is closed when the
// script ended. A replica running a script does not apply its master's
// stream until it ends.
func keepBusy(t *testing.T, replica *redis.Client) <-chan struct{} {
	t.Helper()
	ctx := context.Background()
	if err := replica.ConfigSet(ctx, "busy-reply-threshold", "1").Err(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = replica.EvalRO(ctx, `
local t = redis.call('TIME')
local stop = t[1] * 1000000 + t[2] + tonumber(ARGV[1])
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop
return 1`, nil, busyFor.Microseconds()).Err()
	}()
	testenv.Eventually(t, "the replica runs the script", 100, func() bool {
		err := replica.Ping(ctx).Err()
		return err != nil && strings.HasPrefix(err.Error(), "BUSY")
	})
	return done
}

// replicaOf is a client of the replica of key's master.
func replicaOf(t *testing.T, cluster *proc.RedisCluster, key string) *redis.Client {
	t.Helper()
	ctx := context.Background()
	master, err := cluster.MasterOf(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	_, masterPort, _ := strings.Cut(master.Addr, ":")
	for _, n := range cluster.Nodes {
		if !n.Running() || n == master {
			continue
		}
		if role := roleOf(ctx, n); len(role) > 2 && role[0] == "slave" && fmt.Sprint(role[2]) == masterPort {
			node := redis.NewClient(&redis.Options{Addr: n.Addr})
			t.Cleanup(func() { _ = node.Close() })
			return node
		}
	}
	t.Fatalf("no replica of %s", master.Addr)
	return nil
}

// The gateway dies at a fault point and the master of its transaction's
// record is killed (SIGKILL) at the same moment: its replica takes over,
// and a restarted gateway's recovery finishes the transaction as its
// record says, a decision included. (A failover keeps every write a
// replica had; losing the record altogether is the one-server test's
// "redis-restarted-empty".)
func TestGatewayAndARecordsMasterLostTogetherFinishEveryTransaction(t *testing.T) {
	cluster, rd := startCluster(t)
	for _, c := range []struct {
		at        Fault
		committed bool // the outcome recovery must reach
	}{
		{AfterPrepare, false},
		{AfterDecision, true},
		{AfterCounterCommit, true},
	} {
		t.Run(string(c.at), func(t *testing.T) {
			ctx := context.Background()
			var killed *proc.RedisNode
			var key string
			var h *harness
			rd := &testenv.Redis{Client: rd.Client, Prefix: rd.Prefix + string(c.at) + ":", URL: rd.URL, Cluster: true}
			h = newHarnessOn(t, rd, nil, func(at Fault) bool {
				if at != c.at {
					return false
				}
				var txID string
				if err := h.dbs.Counter.Pool.QueryRow(ctx, `SELECT tx_id FROM tx_barriers LIMIT 1`).Scan(&txID); err != nil {
					t.Fatal(err)
				}
				key = h.coord.records.key(txID)
				master, err := cluster.MasterOf(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				master.Kill()
				killed = master
				return true
			})
			h.settings.PhaseTwoTimeout = 200 * time.Millisecond
			h.settings.RecoveryInterval = 100 * time.Millisecond
			owner, topic, subs := h.world()
			if _, err := h.coord.Publish(ctx, owner, topic, notification.Message{Title: "lost together"}); !errors.Is(err, ErrCrashed) {
				t.Fatalf("publish: %v, want the injected crash", err)
			}
			if killed == nil {
				t.Fatal("the fault hit no transaction in flight")
			}
			waitFailover(t, cluster, rd.Client, key, killed)
			h.recoverUntilSettled(h.newCoordinator(nil))

			h.expectOneOutcome(t, c.committed, subs[0])
			// The killed master comes back as its successor's replica,
			// for the next case.
			if err := killed.Start(ctx); err != nil {
				t.Fatal(err)
			}
			waitReplicasInSync(t, cluster)
		})
	}
}
