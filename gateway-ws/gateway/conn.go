package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"tidings/lib/auth"
)

// closeGrace is how long a closing connection waits for the client's close
// frame before dropping the TCP connection.
const closeGrace = time.Second

// CloseTokenExpired is the close code of a socket whose token has expired.
// It is not 1000, after which phoenix.js would not reconnect: it does, and
// asks its params callback for the token to connect with.
const CloseTokenExpired = 4001

// conn is one client socket, whatever carries it: a reader that handles
// frames in order, as a Phoenix socket process does, handing each
// channel's pushes to that channel's own goroutine (push.go), and a
// bounded outbound queue that its transport drains. Over a WebSocket
// (websocket.go) the reader is one goroutine, which only waits while frames
// are read and handled off it (reader.go), and a writer goroutine runs
// only while there is something to write, so an idle connection costs one
// parked goroutine and a few small structs, which is what lets one replica
// hold many of them; a long-poll session (longpoll.go) reads in its POSTs
// and drains the queue in its GETs.
type conn struct {
	srv *Server
	t   transport
	// ser is the socket's serializer (its vsn): it decodes what the client
	// sends and turns the gateway's V2 frames into what the client reads.
	ser    serializer
	id     uint64
	userID int64
	// expires is when the token the socket was opened with expires, and
	// with it every right of the socket.
	expires time.Time
	// claims are the token's, asked again whether it is revoked when a
	// revocation of the user's tokens is heard (signout.go).
	claims auth.Claims

	limiter *rate.Limiter
	// limitedAt is when the last "rate limited" reply was queued; frame
	// handling only (one frame at a time, reader.go).
	limitedAt time.Time

	mu    sync.Mutex
	queue [][]byte // frames waiting for the transport; at most cfg.SendQueue
	// writing: the transport was told (flush) that queue has frames, and
	// has not found it empty since.
	writing bool
	room    chan struct{} // once a replay waits for room in queue (enqueuePaced): the transport took frames

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

	channels map[string]*channel // topic -> channel; frame handling only
}

// transport carries a conn's frames to its client and ends the client's
// connection: the WebSocket (websocket.go) or a long-poll session
// (longpoll.go). The protocol (conn, channels, pushes) is the same for
// both.
type transport interface {
	// flush says that frames wait in the conn's queue and that nothing
	// drains it since the transport last found it empty (conn.next,
	// conn.takeAll); it must not block.
	flush()
	// shut ends the client's side once the conn was killed, telling the
	// client c.closeCode and c.closeReason where the transport can. It
	// runs on a goroutine of its own and may wait up to closeGrace.
	shut()
	// release drops the connection when the conn is torn down.
	release()
}

// newConn is a socket of userID over t (set by the caller before the conn
// is used) speaking ser.
func newConn(srv *Server, ser serializer, id uint64, userID int64) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		ctx:       ctx,
		cancel:    cancel,
		srv:       srv,
		ser:       ser,
		id:        id,
		userID:    userID,
		limiter:   rate.NewLimiter(rate.Limit(srv.cfg.InboundRate), srv.cfg.InboundBurst),
		done:      make(chan struct{}),
		closeSent: make(chan struct{}),
	}
}

// enqueue queues frame (a V2 text frame; the socket's serializer encodes
// it for the client) without ever blocking: the hub calls it for every
// member of a topic, and one slow client must not hold up the rest. A
// full queue closes the connection instead of growing.
func (c *conn) enqueue(frame []byte) {
	frame = c.ser.encode(frame)
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
		c.t.flush()
	}
}

// next takes the oldest queued frame; when there is none (or the conn is
// killed) it reports false, and the next enqueue flushes again. Taking one
// frame at a time keeps the queue's bound the whole backlog.
func (c *conn) next() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 || c.killed() {
		c.queue = nil
		c.writing = false
		return nil, false
	}
	frame := c.queue[0]
	c.queue[0] = nil
	c.queue = c.queue[1:]
	c.madeRoom()
	return frame, true
}

// madeRoom wakes a replay waiting for room in the queue; c.mu is held.
func (c *conn) madeRoom() {
	if c.room != nil {
		select {
		case c.room <- struct{}{}:
		default:
		}
	}
}

// takeAll takes every queued frame (none once the conn is killed); the
// next enqueue flushes again.
func (c *conn) takeAll() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	frames := c.queue
	c.queue = nil
	c.writing = false
	c.madeRoom()
	if c.killed() {
		return nil
	}
	return frames
}

// kill starts closing the connection with code; the first reason wins.
func (c *conn) kill(code int, reason string) {
	c.once.Do(func() {
		c.closeCode, c.closeReason = code, reason
		close(c.done)
		c.cancel()
		go func() {
			defer close(c.closeSent)
			c.t.shut()
		}()
	})
}

func (c *conn) killed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// armExpiry closes the socket when its token expires; the returned
// function stops the timer.
func (c *conn) armExpiry() (stop func() bool) {
	if c.expires.IsZero() {
		return func() bool { return false }
	}
	return time.AfterFunc(time.Until(c.expires), c.expire).Stop
}

// receive acts on one frame from the client, frames taken one at a time
// in order: decode it with the socket's serializer (a frame that is not a
// message closes the socket, as Phoenix's serializer raising ends its
// socket), then accept it.
func (c *conn) receive(data []byte, binary bool) {
	c.srv.metrics.MessagesIn.Inc()
	if c.killed() {
		return // only the client's close frame matters now
	}
	msg, err := c.ser.decode(data, binary)
	if errors.Is(err, ErrBinaryUnsupported) {
		c.kill(websocket.CloseUnsupportedData, "binary frames are not supported")
		return
	}
	if err != nil {
		c.kill(websocket.CloseInvalidFramePayloadData, "invalid message")
		return
	}
	c.accept(msg)
}

// accept handles a decoded message within the inbound rate.
func (c *conn) accept(msg Message) {
	if !c.limiter.Allow() {
		c.rateLimited(msg)
		return
	}
	c.handle(msg)
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

// teardown leaves every topic and releases the socket.
func (c *conn) teardown() {
	c.kill(websocket.CloseNormalClosure, "")
	for _, ch := range c.channels {
		c.srv.hub.Leave(ch)
	}
	// The running pushes are cancelled; none is left behind the socket.
	c.pushers.Wait()
	<-c.closeSent
	c.t.release()
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
		if msg.Binary != nil {
			// A join's payload is a JSON object; nothing is joined or left.
			c.reply(msg.JoinRef, msg.Ref, msg.Topic, StatusError, Reason{ReasonBinaryPayload})
			return
		}
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
