package gateway

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"tidings/gateway-ws/cluster"
)

// Phoenix Presence on topic:<id>, as phoenix.js's Presence class expects
// it: after the ok reply of a join the member gets `presence_state`
// {key: {metas: [meta...]}}, and every member of the topic, on every
// replica, gets `presence_diff` {joins, leaves} when someone joins or
// leaves. The key is the user id (a string), one meta per joined channel:
// {phx_ref, online_at (Unix ms), name}.
//
// The state lives in Redis (presence_store.go), so that it spans the
// replicas. A replica writes its own entries only, through one writer
// goroutine that batches whatever is waiting into one MULTI per round trip
// (a burst of leaves when many sockets close costs a few round trips, not
// one each), in the order the changes were decided, so a leave never
// overtakes its join. A replica that dies cannot remove its entries: every
// replica looks, each sweep interval, for nodes with entries that the node
// registry (gateway-ws/cluster) no longer lists, and removes theirs with
// their leaves. A dead replica's members so leave within its record's TTL
// plus one sweep interval, which is PRESENCE_TIMEOUT. A replica that was
// swept while alive (cut from Redis longer than its TTL) finds itself gone
// from the store at its next sweep and writes its entries again.

// Presence events.
const (
	EventPresenceState = "presence_state"
	EventPresenceDiff  = "presence_diff"
)

// DefaultPresenceTimeout bounds how long a dead replica's members stay
// present; it must exceed the node registry's TTL.
const DefaultPresenceTimeout = 15 * time.Second

// DefaultPresenceMaxMembers is PRESENCE_MAX_MEMBERS' default.
const DefaultPresenceMaxMembers = 1000

// presenceBatch is the most changes one round trip carries.
const presenceBatch = 256

// rawMeta is one meta, as JSON.
type rawMeta = json.RawMessage

// presenceMetas is one key's presence: {"metas": [...]}.
type presenceMetas struct {
	Metas []rawMeta `json:"metas"`
}

// presenceDiff is the presence_diff payload.
type presenceDiff struct {
	Joins  map[string]presenceMetas `json:"joins"`
	Leaves map[string]presenceMetas `json:"leaves"`
}

// presenceMeta is what a member shows of itself.
type presenceMeta struct {
	PhxRef   string `json:"phx_ref"`
	OnlineAt int64  `json:"online_at"` // Unix milliseconds
	Name     string `json:"name,omitempty"`
}

// presenceEntry is one local channel's entry.
type presenceEntry struct {
	topic, ref, key string
	meta            []byte
}

// presenceWaiter is a join waiting for its write and the topic's state.
type presenceWaiter chan presenceResult

type presenceResult struct {
	state map[string]string
	err   error
}

// presence tracks this replica's members of topic:<id> channels.
type presence struct {
	store  *presenceStore
	nodes  *cluster.Registry
	access Access
	log    *slog.Logger
	// sweepEvery is how often dead replicas are looked for.
	sweepEvery time.Duration

	mu      sync.Mutex
	entries map[*channel]*presenceEntry
	topics  map[string]int // local entries per topic
	queue   []queuedOp     // changes decided, not yet written, in order
	wake    chan struct{}  // a change was queued (capacity 1)
}

type queuedOp struct {
	op     presenceOp
	waiter presenceWaiter // nil: nobody waits (leaves, rewrites)
}

// presenceSweepInterval is what is left of timeout once a dead node's
// record has expired (ttl).
func presenceSweepInterval(timeout, ttl time.Duration) (time.Duration, error) {
	if timeout <= ttl {
		return 0, fmt.Errorf("PRESENCE_TIMEOUT (%s) must be longer than NODE_TTL (%s): a dead replica is known only once its record expires", timeout, ttl)
	}
	return timeout - ttl, nil
}

func newPresence(store *presenceStore, nodes *cluster.Registry, access Access, timeout time.Duration, log *slog.Logger) (*presence, error) {
	every, err := presenceSweepInterval(timeout, nodes.Settings().TTL)
	if err != nil {
		return nil, err
	}
	return &presence{
		store: store, nodes: nodes, access: access, log: log, sweepEvery: every,
		entries: map[*channel]*presenceEntry{},
		topics:  map[string]int{},
		wake:    make(chan struct{}, 1),
	}, nil
}

// track makes ch, a channel just opened on topic:<id>, present on every
// replica, and sends it the topic's presence_state. When the write fails
// the channel is crashed (phx_error), so that phoenix.js rejoins, as a
// Phoenix channel whose track failed would be.
func (p *presence) track(ctx context.Context, ch *channel) {
	if ch.kind != kindTopic {
		return
	}
	meta := presenceMeta{PhxRef: strconv.FormatUint(ch.conn.id, 36) + "-" + rand.Text()[:10], OnlineAt: time.Now().UnixMilli()}
	if u, err := p.access.User(ctx, ch.conn.userID); err == nil {
		meta.Name = u.Name
	}
	raw, err := json.Marshal(meta)
	if err != nil {
		p.log.Error("presence meta", "err", err)
		return
	}
	e := &presenceEntry{topic: ch.topic, ref: meta.PhxRef, key: strconv.FormatInt(ch.conn.userID, 10), meta: raw}
	waiter := make(presenceWaiter, 1)
	// ch.mu, then p.mu: the order of a close, which leaves the hub (and so
	// untracks) under ch.mu. A channel closed by now is not tracked; one
	// closed from now on is untracked after this write.
	ch.mu.Lock()
	if ch.state != channelOpen {
		ch.mu.Unlock()
		return
	}
	p.mu.Lock()
	p.entries[ch] = e
	p.topics[e.topic]++
	p.enqueueLocked(queuedOp{op: presenceOp{topic: e.topic, ref: e.ref, key: e.key, meta: e.meta, track: true, state: true}, waiter: waiter})
	p.mu.Unlock()
	ch.mu.Unlock()

	var res presenceResult
	select {
	case res = <-waiter:
	case <-ctx.Done():
		res.err = ctx.Err()
	}
	if res.err != nil {
		p.log.Warn("presence track failed; the channel is crashed for the client to rejoin", "conn", ch.conn.id, "topic", ch.topic, "err", res.err)
		ch.crash()
		return
	}
	payload, err := json.Marshal(presenceState(res.state))
	if err != nil {
		p.log.Error("presence state", "topic", ch.topic, "err", err)
		return
	}
	// With the join's ref, as a Phoenix channel's own push: a client that
	// has rejoined since drops it.
	ch.conn.enqueue(Message{JoinRef: ch.joinRef, Topic: ch.topic, Event: EventPresenceState, Payload: payload}.Encode())
}

// untrack removes ch's entry, if it has one; the hub calls it for every
// channel that leaves. It never waits for Redis.
func (p *presence) untrack(ch *channel) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.entries[ch]
	if !ok {
		return
	}
	delete(p.entries, ch)
	p.topics[e.topic]--
	last := p.topics[e.topic] == 0
	if last {
		delete(p.topics, e.topic)
	}
	p.enqueueLocked(queuedOp{op: presenceOp{topic: e.topic, ref: e.ref, key: e.key, last: last}})
}

// presenceState is the presence_state payload of a topic's hash.
func presenceState(hash map[string]string) map[string]presenceMetas {
	out := make(map[string]presenceMetas, len(hash))
	for _, v := range hash {
		key, meta, ok := entryKey(v)
		if !ok {
			continue
		}
		m := out[key]
		m.Metas = append(m.Metas, meta)
		out[key] = m
	}
	return out
}
