package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/infra/proc"
	"tidings/lib/redisx"
	"tidings/lib/testenv"
)

// nodeOf is the server of rdb, or on a cluster the master owning channel's
// slot: where its subscribers are counted and its connections listed.
func nodeOf(t testing.TB, rdb redis.UniversalClient, channel string) *redis.Client {
	t.Helper()
	c, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.(*redis.Client)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	master, err := c.MasterForKey(ctx, channel)
	if err != nil {
		t.Fatalf("master of %s: %v", channel, err)
	}
	return master
}

// subscribersOf counts Redis's subscribers of channel: PUBSUB NUMSUB on
// one server, PUBSUB SHARDNUMSUB on the master of its slot on a cluster.
func subscribersOf(t testing.TB, rdb redis.UniversalClient, channel string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := redisx.Subscribers(ctx, rdb, channel)
	if err != nil {
		t.Fatalf("count the subscribers of %s: %v", channel, err)
	}
	return n
}

// clusterBroker is a broker on a cluster of the test's own, whose frames
// arrive on the channel returned.
func clusterBroker(t *testing.T, masters, replicas int) (*proc.RedisCluster, *redis.ClusterClient, *Broker, <-chan string) {
	t.Helper()
	cluster := testenv.StartRedisCluster(t, masters, replicas)
	rdb := testenv.ClusterClient(t, cluster)
	got := make(chan string, 100)
	b, err := NewBroker(context.Background(), rdb, "tidings-test:", slog.New(slog.NewTextHandler(io.Discard, nil)), func(topic string, frame []byte) { got <- topic + " " + string(frame) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return cluster, rdb, b, got
}

func mustSubscribe(t *testing.T, b *Broker, topic string) {
	t.Helper()
	ready, err := b.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatalf("subscription of %s not confirmed", topic)
	}
}

// arrives publishes frame on topic until it comes back, a bounded number
// of times: after a fault, the broker needs a while to be back.
func arrives(t *testing.T, b *Broker, got <-chan string, topic, frame string) {
	t.Helper()
	testenv.Eventually(t, topic+" "+frame+" to arrive", 200, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := b.Publish(ctx, topic, []byte(frame)); err != nil {
			return err
		}
		for {
			select {
			case m := <-got:
				if m == topic+" "+frame {
					return nil
				}
			case <-time.After(100 * time.Millisecond):
				return context.DeadlineExceeded
			}
		}
	})
}

// On a cluster a topic travels on its shard: the replica's subscription is
// a shard channel's on the master owning its slot (no node counts a plain
// subscriber), and a frame published through the broker (SPUBLISH, which
// alone reaches shard subscribers) arrives. Two topics of one partition
// share their lane's connection, which only one slot allows.
func TestBrokerCarriesATopicOnItsShard(t *testing.T) {
	cluster, rdb, b, got := clusterBroker(t, 3, 0)
	topic, sibling := "user:1", ""
	for i := 2; sibling == ""; i++ {
		if other := fmt.Sprintf("user:%d", i); b.partition(other) == b.partition(topic) {
			sibling = other
		}
	}
	mustSubscribe(t, b, topic)
	mustSubscribe(t, b, sibling)
	ctx := context.Background()
	ch := b.channel(topic)
	if n := subscribersOf(t, rdb, ch); n != 1 {
		t.Fatalf("PUBSUB SHARDNUMSUB %s on its master: %d, want 1", ch, n)
	}
	for _, node := range cluster.Nodes {
		c := redis.NewClient(&redis.Options{Addr: node.Addr})
		n, err := c.PubSubNumSub(ctx, ch).Result()
		_ = c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if n[ch] != 0 {
			t.Fatalf("PUBSUB NUMSUB %s on %s: %d, want 0 (a plain subscription)", ch, node.Addr, n[ch])
		}
	}
	arrives(t, b, got, topic, "hello")
	arrives(t, b, got, sibling, "hello too")
}

// When the slot of a subscribed topic's partition moves to another master,
// Redis unsubscribes the replica there; the broker subscribes again at the
// slot's new master, and frames published afterwards arrive.
func TestBrokerFollowsATopicWhoseSlotMoved(t *testing.T) {
	cluster, _, b, got := clusterBroker(t, 3, 0)
	ctx := context.Background()
	topic := "user:5"
	mustSubscribe(t, b, topic)
	ch := b.channel(topic)
	to, err := cluster.MoveSlot(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	target := redis.NewClient(&redis.Options{Addr: to.Addr})
	defer target.Close()
	arrives(t, b, got, topic, "after the move")
	n, err := target.PubSubShardNumSub(ctx, ch).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n[ch] != 1 {
		t.Fatalf("PUBSUB SHARDNUMSUB %s on the slot's new master: %d, want 1", ch, n[ch])
	}
}

// When the master owning a subscribed topic's partition dies, its replica
// takes over; the broker subscribes again there, frames published
// afterwards arrive, and the topic is reported resumed (its gap filled).
func TestBrokerResubscribesAfterAFailover(t *testing.T) {
	cluster, _, b, got := clusterBroker(t, 3, 1)
	resumed := make(chan string, 10)
	b.SetResumed(func(topic string) { resumed <- topic })
	ctx := context.Background()
	topic := "user:9"
	mustSubscribe(t, b, topic)
	// A watched channel on a lane of its own, in the same slot (its hash
	// tag is the topic's partition's): its resumption is reported by its
	// whole name, for the gateway to fill what the users' batches lost.
	tag := b.channel(topic)[strings.Index(b.channel(topic), "{") : strings.Index(b.channel(topic), "}")+1]
	watched := "tidings-test:" + tag + ":watched"
	if err := b.Watch(ctx, watched, func(string) {}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, "the watched channel subscribed", 200, func() bool { return subscribersOf(t, b.rdb, watched) == 1 })
	master, err := cluster.MasterOf(ctx, b.channel(topic))
	if err != nil {
		t.Fatal(err)
	}
	master.Kill() // the fault
	// Every node still reports the cluster ok until one notices the
	// master gone: wait for its replica to own the slot, then for the
	// cluster to agree.
	testenv.Eventually(t, "the replica to take the slot over", 600, func() bool {
		now, err := cluster.MasterOf(ctx, b.channel(topic))
		return err == nil && now != master
	})
	if err := cluster.WaitHealthy(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	arrives(t, b, got, topic, "after the failover")
	want := map[string]bool{topic: true, watched: true}
	for len(want) > 0 {
		select {
		case r := <-resumed:
			if !want[r] {
				t.Fatalf("resumed %q, want only %q and %q, once each", r, topic, watched)
			}
			delete(want, r)
		case <-time.After(10 * time.Second):
			t.Fatalf("never reported resumed after their master died: %v", want)
		}
	}
}

// A Watch that comes after the broker closed (the coordinator's ack
// relay subscribes from a goroutine of its own, which may run on while the
// replica shuts down) leaves no lane behind, and the Close it raced with
// never meets a lane it has not opened yet.
func TestBrokerWatchAfterCloseLeavesNoLane(t *testing.T) {
	_, _, b, _ := clusterBroker(t, 3, 0)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_ = b.Watch(context.Background(), "tidings-test:{late}:watched", func(string) {})
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.watched) != 0 {
		t.Fatalf("%d watched lanes listed after Close, want none", len(b.watched))
	}
}
