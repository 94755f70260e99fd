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
)

// closeGrace is how long a closing connection waits for the client's close
// frame before dropping the TCP connection.
const closeGrace = time.Second

// CloseTokenExpired is the close code of a socket whose token has expired.
// It is not 1000, after which phoenix.js would not reconnect: it does, and
// asks its params callback for the token to connect with.
const CloseTokenExpired = 4001

// conn is one client socket: a reader goroutine that handles frames in
// order, as a Phoenix socket process does, handing each channel's pushes
// to that channel's own goroutine (push.go), and a bounded outbound queue
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
	queue   [][]byte      // frames waiting for the writer; at most cfg.SendQueue
	writing bool          // a writer goroutine is draining queue
	room    chan struct{} // once a replay waits for room in queue (enqueuePaced): the writer took a frame

	done chan struct{} // closed by kill
	// ctx is cancelled by kill: the channels' running pushes end with the
	// socket.
	ctx    context.Context
	cancel context.CancelFunc
	// pushers counts the channels' goroutines running pushes (push.go).
	pushers     sync.WaitGroup
	once        sync.Once
	closeCode   int
	closeReason string
	closeSent   chan struct{} // closed once the close frame is out (or abandoned)

	channels map[string]*channel // topic -> channel; reader goroutine only
}

func newConn(srv *Server, ws *websocket.Conn, id uint64, userID int64) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		ctx:       ctx,
		cancel:    cancel,
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
		if c.room != nil {
			select {
			case c.room <- struct{}{}:
			default:
			}
		}
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
		c.cancel()
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
	// The running pushes are cancelled; none is left behind the socket.
	c.pushers.Wait()
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
		c.queueLeave(ch, msg)
		return
	}
	c.queuePush(ch, msg)
}

// ignore is Phoenix's answer to a message for a topic the socket has not
// joined (or cannot join): an error reply without join_ref.
func (c *conn) ignore(msg Message) {
	c.reply(nil, msg.Ref, msg.Topic, StatusError, Reason{ReasonUnmatchedTopic})
}

func (c *conn) reply(joinRef, ref json.RawMessage, topic, status string, response any) {
	c.enqueue(replyFrame(joinRef, ref, topic, status, response))
}
