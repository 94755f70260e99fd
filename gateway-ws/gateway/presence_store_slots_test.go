package gateway

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"tidings/lib/testenv"
)

// topicsOnShards returns n topics; on a cluster, topics whose hashes live
// on n different masters, so that a step spanning them crosses shards.
func topicsOnShards(t *testing.T, rds *testenv.Redis, s *presenceStore, n int) []string {
	t.Helper()
	cluster, ok := rds.Client.(*redis.ClusterClient)
	var topics []string
	masters := map[string]bool{}
	for i := 1; len(topics) < n && i <= 1000; i++ {
		topic := fmt.Sprintf("topic:%d", i)
		if ok {
			master, err := cluster.MasterForKey(context.Background(), s.topicKey(topic))
			if err != nil {
				t.Fatal(err)
			}
			if masters[master.Options().Addr] {
				continue
			}
			masters[master.Options().Addr] = true
		}
		topics = append(topics, topic)
	}
	if len(topics) < n {
		t.Fatalf("found %d topics on different masters, want %d (a cluster of fewer masters?)", len(topics), n)
	}
	return topics
}

// TestPresenceSweepRemovesADeadNodesMembersOnEveryShard: node dead tracks
// a member of three topics, on three masters of a cluster; node live
// tracks one of the first. Live's sweep of dead removes dead's three
// entries, publishes one leave diff per topic, keeps live's entry, and
// forgets dead: its topic set is empty and it is no longer a node.
func TestPresenceSweepRemovesADeadNodesMembersOnEveryShard(t *testing.T) {
	rds := testenv.NewRedis(t)
	live, dead := newTestPresenceStore(rds, rds.Client, "live"), newTestPresenceStore(rds, rds.Client, "dead")
	ctx := context.Background()
	topics := topicsOnShards(t, rds, live, 3)
	frames := make([]<-chan *redis.Message, len(topics))
	var ops []presenceOp
	for i, topic := range topics {
		frames[i] = subscribeFrames(t, rds, topic)
		ops = append(ops, trackOp(topic, "20", fmt.Sprintf("d%d", i), false))
	}
	if _, err := live.write(ctx, []presenceOp{trackOp(topics[0], "10", "l", false)}); err != nil {
		t.Fatal(err)
	}
	<-frames[0]
	if _, err := dead.write(ctx, ops); err != nil {
		t.Fatalf("tracks on %d shards: %v", len(topics), err)
	}
	for _, f := range frames {
		<-f
	}

	if removed, err := live.sweep(ctx, "dead"); err != nil || removed != len(topics) {
		t.Fatalf("sweep of dead: %d, %v; want %d entries removed", removed, err, len(topics))
	}
	for i, topic := range topics {
		expectFrame(t, frames[i], fmt.Sprintf(`[null,null,%q,"presence_diff",{"joins":{},"leaves":{"20":{"metas":[{"phx_ref":"d%d"}]}}}]`, topic, i))
		hash, err := rds.Client.HGetAll(ctx, live.topicKey(topic)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 1, false: 0}[i == 0]; len(hash) != want || (want == 1 && hash["live|l"] == "") {
			t.Errorf("%s after the sweep: %v; want %d entries, live's only", topic, hash, want)
		}
	}
	if n, err := rds.Client.SCard(ctx, live.nodeKey("dead")).Result(); err != nil || n != 0 {
		t.Errorf("dead's topic set after the sweep: %d topics, %v; want none", n, err)
	}
	if nodes, err := live.nodes(ctx); err != nil || len(nodes) != 1 || nodes[0] != "live" {
		t.Errorf("nodes after the sweep: %v, %v; want [live]", nodes, err)
	}
}

// A topic's hash and its channel share a slot (the channel's hash tag), as
// do the node sets: the scripts and MULTIs that touch them together would
// otherwise be refused by a cluster.
func TestPresenceKeysUsedTogetherShareASlot(t *testing.T) {
	rds := testenv.NewRedis(t)
	if !rds.Cluster {
		t.Skip("slots exist only on a Redis Cluster (TIDINGS_TEST_REDIS_URL=redis+cluster://...)")
	}
	s := newTestPresenceStore(rds, rds.Client, "n")
	ctx := context.Background()
	slot := func(key string) int64 {
		t.Helper()
		n, err := rds.Client.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, topic := range []string{"topic:1", "topic:42", "topic:7000"} {
		if a, b := slot(s.topicKey(topic)), slot(s.channel(topic)); a != b {
			t.Errorf("%s: hash in slot %d, channel in slot %d", topic, a, b)
		}
	}
	if a, b := slot(s.nodesKey()), slot(s.nodeKey("gateway-7f3k")); a != b {
		t.Errorf("the set of nodes is in slot %d, a node's topic set in slot %d", a, b)
	}
}

// The node's topic set follows the last op of each topic in a batch: a
// topic left (its last entry) and tracked again in one batch stays in it,
// one only left goes.
func TestPresenceStoreNodeSetFollowsEachTopicsLastOp(t *testing.T) {
	rds := testenv.NewRedis(t)
	s := newTestPresenceStore(rds, rds.Client, "n")
	ctx := context.Background()
	if _, err := s.write(ctx, []presenceOp{trackOp("topic:1", "1", "a", false), trackOp("topic:2", "1", "b", false)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.write(ctx, []presenceOp{
		{topic: "topic:1", key: "1", ref: "a", last: true}, trackOp("topic:1", "1", "c", false),
		{topic: "topic:2", key: "1", ref: "b", last: true},
	}); err != nil {
		t.Fatal(err)
	}
	topics, err := rds.Client.SMembers(ctx, s.nodeKey("n")).Result()
	if err != nil || len(topics) != 1 || topics[0] != "topic:1" {
		t.Fatalf("the node's topics: %v, %v; want [topic:1]", topics, err)
	}
	if hash, err := rds.Client.HGetAll(ctx, s.topicKey("topic:1")).Result(); err != nil || len(hash) != 1 || hash["n|c"] == "" {
		t.Fatalf("topic:1: %v, %v; want the entry c only", hash, err)
	}
}
