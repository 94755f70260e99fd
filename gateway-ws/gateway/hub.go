package gateway

import (
	"context"
	"fmt"
	"sync"
)

// Hub knows which local channels have joined which topic. It subscribes the
// broker to a topic when the first local channel joins it and unsubscribes
// when the last one leaves, and hands every frame the broker receives to
// the topic's channels without ever waiting for a slow one.
type Hub struct {
	broker *Broker

	mu     sync.RWMutex
	topics map[string]*hubTopic
}

type hubTopic struct {
	members map[*channel]struct{}
	ready   <-chan struct{} // closed once Redis confirmed the subscription
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
		ready, err := h.broker.Subscribe(ctx, ch.topic)
		if err != nil {
			h.mu.Unlock()
			return err
		}
		t = &hubTopic{members: map[*channel]struct{}{}, ready: ready}
		h.topics[ch.topic] = t
	}
	t.members[ch] = struct{}{}
	ready := t.ready
	h.mu.Unlock()

	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		h.Leave(ch)
		return fmt.Errorf("subscribe %s: not confirmed: %w", ch.topic, ctx.Err())
	}
}

// Leave removes ch from its topic; it is a no-op when ch is not a member.
func (h *Hub) Leave(ch *channel) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.topics[ch.topic]
	if !ok {
		return
	}
	if _, member := t.members[ch]; !member {
		return
	}
	delete(t.members, ch)
	if len(t.members) == 0 {
		delete(h.topics, ch.topic)
		// Best effort: a failed UNSUBSCRIBE only costs frames this replica
		// drops, and the next SUBSCRIBE of the topic repairs the state.
		ctx, cancel := context.WithTimeout(context.Background(), brokerCallTimeout)
		defer cancel()
		_ = h.broker.Unsubscribe(ctx, ch.topic)
	}
}

// deliver hands frame to every local member of topic.
func (h *Hub) deliver(topic string, frame []byte) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	t, ok := h.topics[topic]
	if !ok {
		return
	}
	for ch := range t.members {
		ch.conn.enqueue(frame)
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
