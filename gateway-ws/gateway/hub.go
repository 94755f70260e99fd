package gateway

import (
	"context"
	"fmt"
	"sync"

	"tidings/gateway-ws/coordinator"
)

// Hub knows which local channels have joined which topic. It subscribes the
// broker to a topic when the first local channel joins it and unsubscribes
// when the last one leaves, and hands every frame the broker receives to
// the topic's channels without ever waiting for a slow one.
//
// Its lock (mu) guards the topics and their members only and is never held
// across a call to the broker, which may wait on Redis (a redial of the
// pub/sub connection takes up to a dial timeout): each topic's SUBSCRIBE
// and UNSUBSCRIBE are put in order by that topic's own lock (hubTopic.op),
// so a topic whose subscription waits holds up only its own joins and
// leaves, never other topics' joins, leaves or frames.
type Hub struct {
	broker *Broker
	// left, when set, is told of every channel that leaves (presence).
	left func(*channel)

	mu     sync.RWMutex
	topics map[string]*hubTopic
}

type hubTopic struct {
	members map[*channel]struct{} // guarded by Hub.mu

	// op is held across this topic's broker calls: a SUBSCRIBE and the
	// UNSUBSCRIBE of the same topic reach Redis in the order the hub
	// decided them. A topic stays in Hub.topics until its UNSUBSCRIBE is
	// sent, so a join meanwhile finds it and waits on op: it never races
	// a second hubTopic's SUBSCRIBE against the old one's UNSUBSCRIBE.
	op sync.Mutex
	// ready is closed once Redis confirmed the topic's subscription; nil
	// while it is not subscribed. Guarded by op.
	ready <-chan struct{}
}

// NewHub returns an empty hub; SetBroker must be called before Join.
func NewHub() *Hub { return &Hub{topics: map[string]*hubTopic{}} }

// SetBroker connects the hub to the broker that feeds it. The two refer to
// each other, so one of them has to be wired after construction.
func (h *Hub) SetBroker(b *Broker) { h.broker = b }

// Join adds ch to its topic and returns once frames published on the topic
// anywhere are sure to reach it.
func (h *Hub) Join(ctx context.Context, ch *channel) error {
	h.mu.Lock()
	t, ok := h.topics[ch.topic]
	if !ok {
		t = &hubTopic{members: map[*channel]struct{}{}}
		h.topics[ch.topic] = t
	}
	t.members[ch] = struct{}{}
	h.mu.Unlock()

	ready, err := h.subscribe(ctx, ch.topic, t)
	if err != nil {
		h.Leave(ch)
		return err
	}
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		h.Leave(ch)
		return fmt.Errorf("subscribe %s: not confirmed: %w", ch.topic, ctx.Err())
	}
}

// subscribe subscribes the broker to t unless it is already, and returns
// what closes once Redis confirmed it.
func (h *Hub) subscribe(ctx context.Context, topic string, t *hubTopic) (<-chan struct{}, error) {
	t.op.Lock()
	defer t.op.Unlock()
	if t.ready == nil {
		ready, err := h.broker.Subscribe(ctx, topic)
		if err != nil {
			return nil, err
		}
		t.ready = ready
	}
	return t.ready, nil
}

// Leave removes ch from its topic; it is a no-op when ch is not a member.
func (h *Hub) Leave(ch *channel) {
	h.mu.Lock()
	t, ok := h.topics[ch.topic]
	if !ok {
		h.mu.Unlock()
		return
	}
	if _, member := t.members[ch]; !member {
		h.mu.Unlock()
		return
	}
	delete(t.members, ch)
	empty := len(t.members) == 0
	h.mu.Unlock()
	if h.left != nil {
		h.left(ch)
	}
	if empty {
		h.release(ch.topic, t)
	}
}

// release unsubscribes t, which had no member left, and forgets it, unless
// a join has come meanwhile: that join keeps (or makes) the subscription.
func (h *Hub) release(topic string, t *hubTopic) {
	t.op.Lock()
	defer t.op.Unlock()
	h.mu.RLock()
	rejoined := len(t.members) > 0
	h.mu.RUnlock()
	if rejoined {
		return
	}
	if t.ready != nil {
		t.ready = nil
		// Best effort: a failed UNSUBSCRIBE only costs frames this replica
		// drops, and the next SUBSCRIBE of the topic repairs the state.
		ctx, cancel := context.WithTimeout(context.Background(), brokerCallTimeout)
		_ = h.broker.Unsubscribe(ctx, topic)
		cancel()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// A join since the UNSUBSCRIBE waits on op and subscribes again.
	if len(t.members) == 0 && h.topics[topic] == t {
		delete(h.topics, topic)
	}
}

// deliver hands frame to every local member of topic; a user channel's
// notification goes through the member's feed (offerNotification).
func (h *Hub) deliver(topic string, frame []byte) {
	id := notificationID(topic, frame)
	h.mu.RLock()
	defer h.mu.RUnlock()
	t, ok := h.topics[topic]
	if !ok {
		return
	}
	for ch := range t.members {
		if id != 0 {
			ch.offerNotification(id, frame)
			continue
		}
		ch.conn.enqueue(frame)
	}
}

// deliverUsers hands each user of batch who has local members of their
// user:<id> channel their copy of its event, encoded once per user; a
// notification goes through each member's feed, as in deliver.
func (h *Hub) deliverUsers(batch coordinator.UserBatch) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for user, unread := range batch.Unread {
		topic := coordinator.UserTopic(user)
		t, ok := h.topics[topic]
		if !ok || len(t.members) == 0 {
			continue
		}
		frame, err := BroadcastFrame(topic, batch.Event, batch.Payload(unread))
		if err != nil {
			continue // the coordinator's own event types always encode
		}
		for ch := range t.members {
			if batch.Notification != nil {
				ch.offerNotification(batch.Notification.ID, frame)
				continue
			}
			ch.conn.enqueue(frame)
		}
	}
}

// membersOf returns the local members of topic that belong to userID, or
// all of them when userID is 0.
func (h *Hub) membersOf(topic string, userID int64) []*channel {
	h.mu.RLock()
	defer h.mu.RUnlock()
	t, ok := h.topics[topic]
	if !ok {
		return nil
	}
	var out []*channel
	for ch := range t.members {
		if userID == 0 || ch.conn.userID == userID {
			out = append(out, ch)
		}
	}
	return out
}

// topicNames returns every topic with local members.
func (h *Hub) topicNames() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]string, 0, len(h.topics))
	for name := range h.topics {
		out = append(out, name)
	}
	return out
}

// Topics returns how many topics have local members.
func (h *Hub) Topics() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.topics)
}
