package gateway

import (
	"encoding/json"
	"sync"
)

// channel is a conn's membership of one topic, made by a join.
type channel struct {
	conn    *conn
	topic   string
	kind    topicKind
	id      int64
	joinRef json.RawMessage
	// feed is a user channel's notifications sent and held (replay.go);
	// nil for a topic channel.
	feed *feed

	mu    sync.Mutex
	state channelState // guarded by mu
	// pushes are the client's events on ch not answered yet, oldest (the
	// running one) first; see push.go. Guarded by mu.
	pushes []pendingPush
}

// channelState is where a channel is in its life. A revocation comes from
// outside the frame handling (reader.go), at any point of it.
type channelState int

const (
	channelJoining channelState = iota // a hub member; the ok reply is not sent yet
	channelOpen
	channelRevoked // revoked while joining: the join is refused
	channelClosed
)

// settle ends a successful join: unless ch was revoked meanwhile, it opens
// and reply (the ok reply) is sent, before any phx_close a revocation may
// send. It reports whether ch opened.
func (ch *channel) settle(reply func()) bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.state == channelRevoked {
		ch.state = channelClosed
		return false
	}
	ch.state = channelOpen
	reply()
	return true
}

// closed reports whether ch has been closed (revoked) by now.
func (ch *channel) closed() bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.state == channelClosed
}

// closeLocked leaves an open ch and tells the client with phx_close, as
// Phoenix does when a channel stops normally; ch.mu is held.
func (ch *channel) closeLocked() {
	if ch.state != channelOpen {
		return
	}
	ch.state = channelClosed
	ch.conn.srv.hub.Leave(ch)
	ch.conn.enqueue(Message{JoinRef: ch.joinRef, Ref: ch.joinRef, Topic: ch.topic, Event: EventClose}.Encode())
}

// closeChannel closes ch for the client's rejoin.
func (c *conn) closeChannel(ch *channel) {
	delete(c.channels, ch.topic)
	ch.close()
}

// close leaves an open ch with phx_close.
func (ch *channel) close() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.closeLocked()
}

// crash drops ch after a push handler panicked: phx_error instead of
// phx_close, on which phoenix.js rejoins.
func (ch *channel) crash() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.state == channelClosed {
		return
	}
	ch.state = channelClosed
	ch.conn.srv.hub.Leave(ch)
	ch.conn.enqueue(Message{JoinRef: ch.joinRef, Ref: ch.joinRef, Topic: ch.topic, Event: EventError}.Encode())
}

// revoke closes ch because its user may no longer be a member; unlike
// every other method of conn it is called from outside the reader
// goroutine. A channel still joining is refused when its join ends.
func (c *conn) revoke(ch *channel) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	switch ch.state {
	case channelJoining:
		ch.state = channelRevoked
	case channelOpen:
		c.srv.log.Info("membership revoked", "conn", c.id, "user", c.userID, "topic", ch.topic)
		ch.closeLocked()
	}
}
