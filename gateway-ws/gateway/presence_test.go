package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"tidings/gateway-ws/cluster"
	"tidings/lib/testenv"
)

// presenceView is what phoenix.js's Presence makes of the frames: key ->
// the phx_refs present, from presence_state and presence_diff.
type presenceView map[string]map[string]bool

func (v presenceView) apply(t *testing.T, m Message) {
	t.Helper()
	switch m.Event {
	case EventPresenceState:
		var state map[string]presenceMetas
		if err := json.Unmarshal(m.Payload, &state); err != nil {
			t.Fatalf("presence_state %s: %v", m.Payload, err)
		}
		clear(v)
		v.join(t, state)
	case EventPresenceDiff:
		var diff presenceDiff
		if err := json.Unmarshal(m.Payload, &diff); err != nil || diff.Joins == nil || diff.Leaves == nil {
			t.Fatalf("presence_diff %s: %v; want joins and leaves objects", m.Payload, err)
		}
		v.join(t, diff.Joins)
		for key, p := range diff.Leaves {
			for _, ref := range refs(t, p) {
				delete(v[key], ref)
			}
			if len(v[key]) == 0 {
				delete(v, key)
			}
		}
	}
}

func (v presenceView) join(t *testing.T, joins map[string]presenceMetas) {
	for key, p := range joins {
		if v[key] == nil {
			v[key] = map[string]bool{}
		}
		for _, ref := range refs(t, p) {
			v[key][ref] = true
		}
	}
}

func refs(t *testing.T, p presenceMetas) []string {
	t.Helper()
	var out []string
	for _, raw := range p.Metas {
		var m presenceMeta
		if err := json.Unmarshal(raw, &m); err != nil || m.PhxRef == "" || m.OnlineAt == 0 {
			t.Fatalf("meta %s: %v; want phx_ref and online_at", raw, err)
		}
		out = append(out, m.PhxRef)
	}
	return out
}

func (v presenceView) keys() []string {
	out := make([]string, 0, len(v))
	for k := range v {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// awaitPresence reads c's frames into v until v's keys are want's (user
// ids), reading at most 50 frames (each within read's deadline).
func (c *client) awaitPresence(v presenceView, want ...int64) {
	c.t.Helper()
	keys := make([]string, len(want))
	for i, id := range want {
		keys[i] = strconv.FormatInt(id, 10)
	}
	sort.Strings(keys)
	for range 50 {
		if slices.Equal(v.keys(), keys) {
			return
		}
		_, m := c.read()
		v.apply(c.t, m)
	}
	c.t.Fatalf("presence is %v after 50 frames, want %v", v.keys(), keys)
}

// presenceConfig is a replica whose dead peers' members leave within
// 600 ms.
func presenceConfig(rds *testenv.Redis, db *testenv.DB) Config {
	cfg := testConfig(rds, db.URL)
	cfg.Cluster = cluster.Settings{Heartbeat: 100 * time.Millisecond, TTL: 300 * time.Millisecond}
	cfg.PresenceTimeout = 600 * time.Millisecond
	return cfg
}

// TestPresenceSpansReplicas: the owner of a topic joins on replica A and a
// subscriber on replica B; each gets a presence_state after its ok reply
// and both see both. The subscriber's phx_leave, and later its socket's
// close, each remove it from the owner's view, through presence_diff.
func TestPresenceSpansReplicas(t *testing.T) {
	rds, db := testenv.NewRedis(t), testenv.NewDB(t)
	a, b := startGateway(t, presenceConfig(rds, db)), startGateway(t, presenceConfig(rds, db))
	topicID, ownerID, subs := testenv.Topic(t, db.Pool, 1)
	topic := fmt.Sprintf("topic:%d", topicID)

	owner := dial(t, a, ownerID)
	owner.presence = true
	owner.mustJoin(topic)
	_, first := owner.read()
	if first.Event != EventPresenceState && first.Event != EventPresenceDiff {
		t.Fatalf("first frame after the join reply: %s, want presence", first.Event)
	}
	ownerView := presenceView{}
	ownerView.apply(t, first)
	owner.awaitPresence(ownerView, ownerID)

	sub := dial(t, b, subs[0])
	sub.presence = true
	jr := sub.mustJoin(topic)
	subView := presenceView{}
	sub.awaitPresence(subView, ownerID, subs[0])
	owner.awaitPresence(ownerView, ownerID, subs[0])

	ref := sub.nextRef()
	sub.send(jr, ref, topic, EventLeave, map[string]any{})
	owner.awaitPresence(ownerView, ownerID)
	sub.presence = false
	sub.expect(fmt.Sprintf(`[%q,%q,%q,"phx_reply",{"status":"ok","response":{}}]`, jr, ref, topic))
	sub.expect(fmt.Sprintf(`[%q,%q,%q,"phx_close",{}]`, jr, jr, topic))

	sub.mustJoin(topic)
	owner.awaitPresence(ownerView, ownerID, subs[0])
	_ = sub.ws.Close()
	owner.awaitPresence(ownerView, ownerID)
}

// TestPresenceSweepsADeadReplicasMembers: a member tracked by a replica
// that is not alive (its store written, no node record: as after a
// SIGKILL once its record expired) appears to a member on replica A, and
// leaves within PRESENCE_TIMEOUT, through A's sweep.
func TestPresenceSweepsADeadReplicasMembers(t *testing.T) {
	rds, db := testenv.NewRedis(t), testenv.NewDB(t)
	a := startGateway(t, presenceConfig(rds, db))
	topicID, ownerID, _ := testenv.Topic(t, db.Pool, 0)
	topic := fmt.Sprintf("topic:%d", topicID)
	owner := dial(t, a, ownerID)
	owner.presence = true
	owner.mustJoin(topic)
	view := presenceView{}
	owner.awaitPresence(view, ownerID)

	// The dead replica's store names channels as the live one's broker does.
	dead := &presenceStore{rdb: rds.Client, prefix: rds.Prefix, node: "dead-replica", channel: a.srv.broker.channel}
	meta := []byte(fmt.Sprintf(`{"phx_ref":"ghost","online_at":%d}`, time.Now().UnixMilli()))
	if _, err := dead.write(context.Background(), []presenceOp{{topic: topic, key: "999999", ref: "ghost", meta: meta, track: true}}); err != nil {
		t.Fatal(err)
	}
	owner.awaitPresence(view, ownerID, 999999)
	owner.awaitPresence(view, ownerID)
	testenv.Eventually(t, "the dead replica forgotten", 50, func() bool {
		nodes, err := dead.nodes(context.Background())
		return err == nil && !slices.Contains(nodes, "dead-replica")
	})
}

// TestPresenceIsWrittenAgainAfterItsReplicaWasSwept: a live replica's
// entries are swept (as when it was cut off from Redis past its TTL); at
// its next sweep it finds itself gone and writes them again, so its
// member leaves and comes back in another member's view.
func TestPresenceIsWrittenAgainAfterItsReplicaWasSwept(t *testing.T) {
	rds, db := testenv.NewRedis(t), testenv.NewDB(t)
	a, b := startGateway(t, presenceConfig(rds, db)), startGateway(t, presenceConfig(rds, db))
	topicID, ownerID, subs := testenv.Topic(t, db.Pool, 1)
	topic := fmt.Sprintf("topic:%d", topicID)
	owner, sub := dial(t, a, ownerID), dial(t, b, subs[0])
	owner.presence = true
	owner.mustJoin(topic)
	sub.mustJoin(topic)
	view := presenceView{}
	owner.awaitPresence(view, ownerID, subs[0])

	if removed, err := b.srv.presence.store.sweep(context.Background(), b.srv.nodes.ID()); err != nil || removed != 1 {
		t.Fatalf("sweep of replica B: %d, %v; want its one entry removed", removed, err)
	}
	owner.awaitPresence(view, ownerID)
	owner.awaitPresence(view, ownerID, subs[0])
}

// TestPresenceTimeoutMustExceedTheNodeTTL: a PRESENCE_TIMEOUT that a dead
// replica's record outlives could never be kept; New refuses it, naming
// both settings.
func TestPresenceTimeoutMustExceedTheNodeTTL(t *testing.T) {
	rds, db := testenv.NewRedis(t), testenv.NewDB(t)
	cfg := testConfig(rds, db.URL)
	cfg.Cluster = cluster.Settings{Heartbeat: time.Second, TTL: 3 * time.Second}
	cfg.PresenceTimeout = 3 * time.Second
	srv, err := New(context.Background(), cfg)
	if err == nil {
		srv.closeDeps()
		t.Fatal("New accepted PRESENCE_TIMEOUT equal to NODE_TTL")
	}
	if !strings.Contains(err.Error(), "PRESENCE_TIMEOUT (3s) must be longer than NODE_TTL (3s)") {
		t.Fatalf("New: %v; want it to name PRESENCE_TIMEOUT and NODE_TTL", err)
	}
}

// TestPresenceOfAStoppingReplicaLeavesWithItsSockets: replica B stops
// gracefully; its member's leave reaches a member on replica A from B's
// own writer as B closes its sockets, not from a sweep (A sweeps only
// every minute here).
func TestPresenceOfAStoppingReplicaLeavesWithItsSockets(t *testing.T) {
	rds, db := testenv.NewRedis(t), testenv.NewDB(t)
	cfg := presenceConfig(rds, db)
	cfg.PresenceTimeout = time.Minute
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	topicID, ownerID, subs := testenv.Topic(t, db.Pool, 1)
	topic := fmt.Sprintf("topic:%d", topicID)
	owner, sub := dial(t, a, ownerID), dial(t, b, subs[0])
	owner.presence = true
	owner.mustJoin(topic)
	sub.mustJoin(topic)
	view := presenceView{}
	owner.awaitPresence(view, ownerID, subs[0])

	if err := b.stop(); err != nil {
		t.Fatalf("stop replica B: %v", err)
	}
	owner.awaitPresence(view, ownerID)
}
