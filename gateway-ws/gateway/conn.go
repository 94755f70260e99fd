package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"tidings/lib/ratelimit"
)

// closeGrace is how long a closing connection waits for the client's close
// frame before dropping the TCP connection.
const closeGrace = time.Second

// CloseTokenExpired is the close code of a socket whose token has expired.
// It is not 1000, after which phoenix.js would not reconnect: it does, and
// asks its params callback for the token to connect with.
const CloseTokenExpired = 4001

// conn is one client socket: a reader goroutine that handles frames in
// order, as a Phoenix socket process does, and a bounded outbound queue
// drained by a writer goroutine that runs only while there is something to
// write. An idle connection so costs one parked goroutine and a few small
// structs, which is what lets one replica hold many of them.
type conn struct {
	srv    *Server
	ws     *websocket.Conn
	id     uint64
	userID int64
	// expires is when the token the socket was opened with expires, and
	// with it every right of the socket.
	expires time.Time

	limiter *rate.Limiter
	// limitedAt is when the last "rate limited" reply was queued; reader
	// goroutine only.
	limitedAt time.Time

	mu      sync.Mutex
	queue   [][]byte // frames waiting for the writer; at most cfg.SendQueue
	writing bool     // a writer goroutine is draining queue

	done        chan struct{} // closed by kill
	once        sync.Once
	closeCode   int
	closeReason string
	closeSent   chan struct{} // closed once the close frame is out (or abandoned)

	channels map[string]*channel // topic -> channel; reader goroutine only
}

// channel is a conn's membership of one topic, made by a join.
type channel struct {
	conn    *conn
	topic   string
	kind    topicKind
	id      int64
	joinRef json.RawMessage

	mu    sync.Mutex
	state channelState // guarded by mu
}

// channelState is where a channel is in its life. A revocation comes from
// outside the reader goroutine, at any point of it.
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

func newConn(srv *Server, ws *websocket.Conn, id uint64, userID int64) *conn {
	return &conn{
		srv:       srv,
		ws:        ws,
		id:        id,
		userID:    userID,
		limiter:   rate.NewLimiter(rate.Limit(srv.cfg.InboundRate), srv.cfg.InboundBurst),
		done:      make(chan struct{}),
		closeSent: make(chan struct{}),
	}
}

// enqueue queues frame for the client without ever blocking: the hub calls
// it for every member of a topic, and one slow client must not hold up the
// rest. A full queue closes the connection instead of growing.
func (c *conn) enqueue(frame []byte) {
	c.mu.Lock()
	if c.killed() {
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= c.srv.cfg.SendQueue {
		c.mu.Unlock()
		// The close frame goes out ahead of the frames still queued, which
		// are dropped; if the client reads nothing at all it cannot go out
		// either, and the connection is dropped after closeGrace.
		c.kill(websocket.ClosePolicyViolation, reasonQueueFull)
		return
	}
	c.queue = append(c.queue, frame)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.writeQueued()
	}
}

// writeQueued writes frames until the queue is empty, then exits. It takes
// one frame at a time so that the queue's bound is the whole backlog.
func (c *conn) writeQueued() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.killed() {
			c.queue = nil
			c.writing = false
			c.mu.Unlock()
			return
		}
		frame := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.mu.Unlock()
		_ = c.ws.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		if err := c.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
			c.kill(websocket.CloseAbnormalClosure, "write failed")
			continue
		}
		c.srv.metrics.MessagesOut.Inc()
	}
}

// kill starts closing the connection with code; the first reason wins.
func (c *conn) kill(code int, reason string) {
	c.once.Do(func() {
		c.closeCode, c.closeReason = code, reason
		close(c.done)
		go c.sendClose()
	})
}

// sendClose says why in a close frame, then gives the client closeGrace to
// answer with its own before the reader gives up.
func (c *conn) sendClose() {
	defer close(c.closeSent)
	if c.closeCode == websocket.CloseAbnormalClosure {
		_ = c.ws.NetConn().Close()
		return
	}
	msg := websocket.FormatCloseMessage(c.closeCode, c.closeReason)
	if err := c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace)); err != nil {
		_ = c.ws.NetConn().Close()
		return
	}
	_ = c.ws.NetConn().SetReadDeadline(time.Now().Add(closeGrace))
}

func (c *conn) killed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// serve runs the connection until it closes.
func (c *conn) serve() {
	defer c.teardown()
	defer func() {
		// This goroutine is the gateway's own, not net/http's: a bug here
		// must close one socket, not end the process.
		if r := recover(); r != nil {
			c.srv.log.Error("connection panicked", "conn", c.id, "user", c.userID, "panic", fmt.Sprint(r))
			c.kill(websocket.CloseInternalServerErr, "internal error")
		}
	}()
	if !c.expires.IsZero() {
		expiry := time.AfterFunc(time.Until(c.expires), c.expire)
		defer expiry.Stop()
	}
	c.ws.SetReadLimit(c.srv.cfg.MaxFrameBytes)
	// WebSocket pings count as activity too, as they do for Cowboy's idle
	// timeout under Phoenix.
	c.ws.SetPingHandler(func(data string) error {
		if !c.killed() {
			_ = c.ws.SetReadDeadline(time.Now().Add(c.srv.cfg.IdleTimeout))
		}
		err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(closeGrace))
		var ne net.Error
		if errors.Is(err, websocket.ErrCloseSent) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil // the connection is closing or the pong is late: not a read error
		}
		return err
	})
	for {
		deadline := time.Now().Add(c.srv.cfg.IdleTimeout)
		if c.killed() {
			deadline = time.Now().Add(closeGrace)
		}
		_ = c.ws.SetReadDeadline(deadline)
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			c.readFailed(err)
			return
		}
		c.srv.metrics.MessagesIn.Inc()
		if c.killed() {
			continue // only the client's close frame matters now
		}
		if typ != websocket.TextMessage {
			c.kill(websocket.CloseUnsupportedData, "binary frames are not supported")
			continue
		}
		msg, err := Decode(data)
		if err != nil {
			// Phoenix's serializer raises on such a frame and the socket
			// dies; closing says the same thing more politely.
			c.kill(websocket.CloseInvalidFramePayloadData, "invalid message")
			continue
		}
		if !c.limiter.Allow() {
			c.rateLimited(msg)
			continue
		}
		c.handle(msg)
	}
}

// Flood control. A frame over the inbound rate gets an error reply, but
// at most one per rateLimitedReplyEvery: answering every frame of a flood
// would fill the socket's send queue with replies and close it. The frames
// in between are dropped without a reply and counted
// (tidings_gateway_messages_dropped_total); the socket stays open.
const rateLimitedReplyEvery = time.Second

// reasonQueueFull is the close reason of a socket whose client reads too
// slowly for what it is sent (code 1008).
const reasonQueueFull = "send queue full: the client reads too slowly"

// rateLimited answers (or drops) a frame over the inbound rate.
func (c *conn) rateLimited(msg Message) {
	now := time.Now()
	if !c.limitedAt.IsZero() && now.Sub(c.limitedAt) < rateLimitedReplyEvery {
		c.srv.metrics.MessagesDropped.Inc()
		return
	}
	c.limitedAt = now
	// When the next frame will be let through, in whole seconds.
	wait := c.limiter.Reserve()
	retryAfter := int(math.Ceil(wait.Delay().Seconds()))
	wait.Cancel()
	c.reply(msg.JoinRef, msg.Ref, msg.Topic, StatusError, RateLimited{Reason: ReasonRateLimited, RetryAfter: max(retryAfter, 1)})
}

func (c *conn) readFailed(err error) {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		c.kill(websocket.CloseNormalClosure, "")
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has already sent 1009 (message too big).
		c.kill(websocket.CloseMessageTooBig, "frame too large")
	case errors.As(err, &ne) && ne.Timeout() && !c.killed():
		c.kill(websocket.CloseNormalClosure, "idle timeout")
	default:
		c.kill(websocket.CloseAbnormalClosure, "")
	}
}

// teardown leaves every topic and releases the socket.
func (c *conn) teardown() {
	c.kill(websocket.CloseNormalClosure, "")
	for _, ch := range c.channels {
		c.srv.hub.Leave(ch)
	}
	<-c.closeSent
	_ = c.ws.NetConn().Close()
	c.srv.forget(c)
	c.srv.log.Debug("connection closed", "conn", c.id, "user", c.userID, "code", c.closeCode, "reason", c.closeReason)
}

// expire closes the socket because its token has expired.
func (c *conn) expire() { c.kill(CloseTokenExpired, "token expired") }

// handle answers one message the way a Phoenix socket and its channels do.
func (c *conn) handle(msg Message) {
	if !c.expires.IsZero() && !time.Now().Before(c.expires) {
		// The timer may not have fired yet; nothing is answered past the
		// token's expiry.
		c.expire()
		return
	}
	if msg.Topic == TopicPhoenix && msg.Event == EventHeartbeat {
		c.reply(nil, msg.Ref, TopicPhoenix, StatusOK, nil)
		return
	}
	ch := c.channels[msg.Topic]
	if ch != nil && ch.closed() {
		// Revoked: phx_close is sent, and the topic is not joined.
		delete(c.channels, msg.Topic)
		ch = nil
	}
	if msg.Event == EventJoin {
		if ch != nil {
			// A second join replaces the first, which is closed first.
			c.closeChannel(ch)
		}
		c.join(msg)
		return
	}
	if ch == nil {
		if msg.Event == EventLeave {
			c.reply(msg.JoinRef, msg.Ref, msg.Topic, StatusOK, nil)
			return
		}
		c.ignore(msg)
		return
	}
	if ch.joinRef != nil && !bytes.Equal(msg.JoinRef, ch.joinRef) {
		// A message for an earlier join of this topic (or, like in
		// Phoenix, one without join_ref for a channel joined with one).
		c.ignore(msg)
		return
	}
	if msg.Event == EventLeave {
		c.reply(ch.joinRef, msg.Ref, msg.Topic, StatusOK, nil)
		c.closeChannel(ch)
		return
	}
	c.pushGuarded(ch, msg)
}

// pushGuarded runs a push so that a bug in its handler costs only the
// channel, never the socket or the process: like a crashed Phoenix channel,
// it is dropped and the client gets phx_error, on which phoenix.js rejoins.
func (c *conn) pushGuarded(ch *channel, msg Message) {
	defer func() {
		if r := recover(); r != nil {
			c.srv.log.Error("push handler panicked", "conn", c.id, "user", c.userID, "topic", ch.topic, "event", msg.Event, "panic", fmt.Sprint(r))
			c.srv.hub.Leave(ch)
			delete(c.channels, ch.topic)
			c.enqueue(Message{JoinRef: ch.joinRef, Ref: ch.joinRef, Topic: ch.topic, Event: EventError}.Encode())
		}
	}()
	c.push(ch, msg)
}

// ignore is Phoenix's answer to a message for a topic the socket has not
// joined (or cannot join): an error reply without join_ref.
func (c *conn) ignore(msg Message) {
	c.reply(nil, msg.Ref, msg.Topic, StatusError, Reason{ReasonUnmatchedTopic})
}

func (c *conn) reply(joinRef, ref json.RawMessage, topic, status string, response any) {
	c.enqueue(replyFrame(joinRef, ref, topic, status, response))
}

// closeChannel closes ch for the client's leave or rejoin.
func (c *conn) closeChannel(ch *channel) {
	delete(c.channels, ch.topic)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.closeLocked()
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

func (c *conn) join(msg Message) {
	kind, id := route(msg.Topic)
	if kind == kindUnmatched {
		c.ignore(msg)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.JoinTimeout)
	defer cancel()
	heard := c.srv.revoker.heard.Load()
	if err := authorizeJoin(ctx, c.srv.access, c.userID, kind, id, c.srv.log); err != nil {
		c.refuseJoin(msg, err)
		return
	}
	ch := &channel{conn: c, topic: msg.Topic, kind: kind, id: id, joinRef: msg.JoinRef}
	if err := c.srv.hub.Join(ctx, ch); err != nil {
		c.refuseJoin(msg, err)
		return
	}
	if c.srv.revoker.heard.Load() != heard {
		// A subscription changed while this join was being authorised,
		// perhaps this one, before the revoker could see this member:
		// the answer may be older than the change.
		if err := authorizeJoin(ctx, c.srv.access, c.userID, kind, id, c.srv.log); err != nil {
			c.srv.hub.Leave(ch)
			c.refuseJoin(msg, err)
			return
		}
	}
	opened := ch.settle(func() { c.reply(msg.JoinRef, msg.Ref, msg.Topic, StatusOK, nil) })
	if !opened {
		c.srv.hub.Leave(ch)
		c.refuseJoin(msg, &Refused{ReasonUnauthorized})
		return
	}
	if c.channels == nil {
		c.channels = map[string]*channel{}
	}
	c.channels[msg.Topic] = ch
	c.srv.metrics.Joins.WithLabelValues("ok").Inc()
}

func (c *conn) refuseJoin(msg Message, err error) {
	var refused *Refused
	if errors.As(err, &refused) {
		c.srv.metrics.Joins.WithLabelValues("refused").Inc()
		c.reply(msg.JoinRef, msg.Ref, msg.Topic, StatusError, Reason{refused.Reason})
		return
	}
	c.srv.metrics.Joins.WithLabelValues("error").Inc()
	c.srv.log.Error("join failed", "conn", c.id, "user", c.userID, "topic", msg.Topic, "err", err)
	c.reply(msg.JoinRef, msg.Ref, msg.Topic, StatusError, Reason{ReasonUnavailable})
}

// push handles a client event on a joined channel.
func (c *conn) push(ch *channel, msg Message) {
	if ch.kind != kindTopic || msg.Event != "publish" {
		c.reply(ch.joinRef, msg.Ref, ch.topic, StatusError, Reason{ReasonUnknownEvent})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.PublishTimeout)
	defer cancel()
	// Only the topic's owner may publish: the coordinator checks it, for
	// the socket and HTTP alike, and refuses with ReasonUnauthorized.
	if c.srv.cfg.Publisher == nil {
		c.reply(ch.joinRef, msg.Ref, ch.topic, StatusError, Reason{ReasonUnavailable})
		return
	}
	resp, err := c.srv.cfg.Publisher.Publish(ctx, c.userID, ch.id, msg.Payload)
	var exceeded *ratelimit.Exceeded
	if errors.As(err, &exceeded) {
		c.reply(ch.joinRef, msg.Ref, ch.topic, StatusError, newQuotaReply(exceeded))
		return
	}
	if err != nil {
		var refused *Refused
		reason := ReasonUnavailable
		if errors.As(err, &refused) {
			reason = refused.Reason // the client's answer, not a failure: HTTP does not log it either
		} else {
			c.srv.log.Warn("publish failed", "conn", c.id, "topic", ch.topic, "err", err)
		}
		c.reply(ch.joinRef, msg.Ref, ch.topic, StatusError, Reason{reason})
		return
	}
	c.reply(ch.joinRef, msg.Ref, ch.topic, StatusOK, resp)
}
