package gateway

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/lib/config"
	"tidings/lib/redisx"
	"tidings/lib/testenv"
)

// newTestPresenceStore is node's store on the test's Redis prefix. Its
// channel names carry a hash tag, as the broker's do on a cluster (there
// the tag is a partition of topics; here each topic is its own).
func newTestPresenceStore(rds *testenv.Redis, rdb redis.UniversalClient, node string) *presenceStore {
	return &presenceStore{rdb: rdb, prefix: rds.Prefix, node: node, channel: func(topic string) string { return testChannel(rds, topic) }}
}

func testChannel(rds *testenv.Redis, topic string) string { return rds.Prefix + "ws:{" + topic + "}" }

func trackOp(topic, key, ref string, state bool) presenceOp {
	return presenceOp{topic: topic, key: key, ref: ref, meta: []byte(fmt.Sprintf(`{"phx_ref":%q}`, ref)), track: true, state: state}
}

// subscribeFrames returns the frames published on topic's channel from now.
func subscribeFrames(t *testing.T, rds *testenv.Redis, topic string) <-chan *redis.Message {
	t.Helper()
	ps := redisx.Subscribe(context.Background(), rds.Client, testChannel(rds, topic))
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.ReceiveTimeout(context.Background(), 5*time.Second); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return ps.Channel()
}

func expectFrame(t *testing.T, frames <-chan *redis.Message, want string) {
	t.Helper()
	select {
	case m := <-frames:
		if m.Payload != want {
			t.Fatalf("published\n  %s\nwant\n  %s", m.Payload, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("nothing published, want %s", want)
	}
}

// TestPresenceStoreSweepRemovesOnlyTheDeadNodesEntriesOnce: nodes a and b
// track members of topic:1 (b also of topic:2); sweeping b removes b's
// entries from both topics, publishes one leave diff per topic with b's
// metas as they were stored, keeps a's, and forgets b; a second sweep of b
// (another replica doing the same) removes and announces nothing.
func TestPresenceStoreSweepRemovesOnlyTheDeadNodesEntriesOnce(t *testing.T) {
	rds := testenv.NewRedis(t)
	a, b := newTestPresenceStore(rds, rds.Client, "a"), newTestPresenceStore(rds, rds.Client, "b")
	ctx := context.Background()
	frames1, frames2 := subscribeFrames(t, rds, "topic:1"), subscribeFrames(t, rds, "topic:2")

	if _, err := a.write(ctx, []presenceOp{trackOp("topic:1", "10", "ra", false)}); err != nil {
		t.Fatal(err)
	}
	expectFrame(t, frames1, `[null,null,"topic:1","presence_diff",{"joins":{"10":{"metas":[{"phx_ref":"ra"}]}},"leaves":{}}]`)
	states, err := b.write(ctx, []presenceOp{trackOp("topic:1", "20", "rb1", true), trackOp("topic:1", "20", "rb2", false), trackOp("topic:2", "20", "rb3", false)})
	if err != nil {
		t.Fatal(err)
	}
	if got := presenceState(states[0]); len(got) != 2 || len(got["10"].Metas) != 1 || len(got["20"].Metas) != 1 {
		t.Fatalf("state after b's first track: %v, want 10 and 20 with one meta each", got)
	}
	for range 2 {
		<-frames1
	}
	<-frames2

	removed, err := a.sweep(ctx, "b")
	if err != nil || removed != 3 {
		t.Fatalf("sweep of b: %d, %v; want 3 entries removed", removed, err)
	}
	m := <-frames1
	if m.Payload != `[null,null,"topic:1","presence_diff",{"joins":{},"leaves":{"20":{"metas":[{"phx_ref":"rb1"},{"phx_ref":"rb2"}]}}}]` &&
		m.Payload != `[null,null,"topic:1","presence_diff",{"joins":{},"leaves":{"20":{"metas":[{"phx_ref":"rb2"},{"phx_ref":"rb1"}]}}}]` {
		t.Fatalf("leave diff of topic:1: %s, want b's two metas under 20", m.Payload)
	}
	expectFrame(t, frames2, `[null,null,"topic:2","presence_diff",{"joins":{},"leaves":{"20":{"metas":[{"phx_ref":"rb3"}]}}}]`)

	hash, err := rds.Client.HGetAll(ctx, a.topicKey("topic:1")).Result()
	if err != nil || len(hash) != 1 || hash["a|ra"] == "" {
		t.Fatalf("topic:1 after the sweep: %v, %v; want a's entry only", hash, err)
	}
	nodes, err := a.nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0] != "a" {
		t.Fatalf("nodes after the sweep: %v, %v; want [a]", nodes, err)
	}
	if removed, err := a.sweep(ctx, "b"); err != nil || removed != 0 {
		t.Fatalf("second sweep of b: %d, %v; want nothing removed", removed, err)
	}
	// An untrack of an entry already swept announces nothing either: the
	// next frame is a's leave.
	if _, err := b.write(ctx, []presenceOp{{topic: "topic:1", key: "20", ref: "rb1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.write(ctx, []presenceOp{{topic: "topic:1", key: "10", ref: "ra", last: true}}); err != nil {
		t.Fatal(err)
	}
	expectFrame(t, frames1, `[null,null,"topic:1","presence_diff",{"joins":{},"leaves":{"10":{"metas":[{"phx_ref":"ra"}]}}}]`)
	if n, err := rds.Client.SCard(ctx, a.nodeKey("a")).Result(); err != nil || n != 0 {
		t.Fatalf("a's topic set after its last leave: %d entries, %v; want empty", n, err)
	}
}

// roundTrips counts the client's round trips to Redis: one per command
// sent alone, one per pipeline, except a new connection's handshake
// (HELLO, CLIENT SETINFO).
type roundTrips struct{ n atomic.Int64 }

func handshake(cmd redis.Cmder) bool { return cmd.Name() == "hello" || cmd.Name() == "client" }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !handshake(cmd) {
			r.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !handshake(cmds[0]) {
			r.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// TestPresenceJoinIsOneRoundTripWhateverTheTopicsSize: 2,000 members
// tracked in one batch take one round trip, and a join of that topic,
// its state read included, one more; the state holds all 2,001. On a
// cluster each takes two: the node's sets first, then the topic's scripts.
func TestPresenceJoinIsOneRoundTripWhateverTheTopicsSize(t *testing.T) {
	rds := testenv.NewRedis(t)
	rdb := config.RedisOf(rds.Client).Client()
	t.Cleanup(func() { _ = rdb.Close() })
	trips := &roundTrips{}
	rdb.AddHook(trips)
	s := newTestPresenceStore(rds, rdb, "n")
	ctx := context.Background()

	ops := make([]presenceOp, 2000)
	for i := range ops {
		ops[i] = trackOp("topic:7", fmt.Sprint(i+1), fmt.Sprintf("r%d", i), false)
	}
	if _, err := s.write(ctx, ops); err != nil {
		t.Fatal(err)
	}
	want := int64(1)
	if rds.Cluster {
		want = 2
	}
	if got := trips.n.Load(); got != want {
		t.Fatalf("2,000 tracks took %d round trips, want %d", got, want)
	}
	trips.n.Store(0)
	states, err := s.write(ctx, []presenceOp{trackOp("topic:7", "5000", "joiner", true)})
	if err != nil {
		t.Fatal(err)
	}
	if got := trips.n.Load(); got != want {
		t.Fatalf("a join of a topic of 2,000 took %d round trips, want %d", got, want)
	}
	if got := len(presenceState(states[0])); got != 2001 {
		t.Fatalf("the joiner's state has %d keys, want 2001", got)
	}
}

// A topic's hash holds at most max entries: a join past it is not tracked
// and publishes no diff; an entry already there can be written again, and
// a leave makes room.
func TestPresenceStoreTracksAtMostMaxMembersPerTopic(t *testing.T) {
	rds := testenv.NewRedis(t)
	s := newTestPresenceStore(rds, rds.Client, "a")
	s.max = 2
	ctx := context.Background()
	frames := subscribeFrames(t, rds, "topic:3")
	states, err := s.write(ctx, []presenceOp{trackOp("topic:3", "1", "r1", false), trackOp("topic:3", "2", "r2", false), trackOp("topic:3", "3", "r3", true)})
	if err != nil {
		t.Fatal(err)
	}
	if len(states[2]) != 2 {
		t.Fatalf("state after three joins under a bound of 2: %v, want the first two", states[2])
	}
	for range 2 {
		<-frames
	}
	if _, err := s.write(ctx, []presenceOp{{topic: "topic:3", key: "1", ref: "r1"}, trackOp("topic:3", "3", "r3", true)}); err != nil {
		t.Fatal(err)
	}
	expectFrame(t, frames, `[null,null,"topic:3","presence_diff",{"joins":{},"leaves":{"1":{"metas":[{"phx_ref":"r1"}]}}}]`)
	expectFrame(t, frames, `[null,null,"topic:3","presence_diff",{"joins":{"3":{"metas":[{"phx_ref":"r3"}]}},"leaves":{}}]`)
	select {
	case m := <-frames:
		t.Fatalf("an extra frame %s: the untracked join published a diff", m.Payload)
	default:
	}
}
