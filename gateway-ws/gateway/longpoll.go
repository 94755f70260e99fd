package gateway

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"tidings/lib/fn"
)

// The long-poll transport at /socket/longpoll, as Phoenix serves it
// (lib/phoenix/transports/long_poll.ex and long_poll_server.ex) and
// phoenix.js's LongPoll (assets/js/phoenix/longpoll.js) speaks it. Every
// answer is HTTP 200 with the outcome in the body's "status", which is
// what phoenix.js reads:
//
//   - GET without a session token: the socket's checks (origin, vsn, the
//     user's token from the `token` parameter or the X-Phoenix-AuthToken
//     header); 410 {"status":410,"token":T,"messages":[]} starts session
//     T, 403 refuses.
//   - GET with T: {"status":200,"token":T,"messages":[frame,...]} as soon
//     as frames are queued, 204 when none came within LongPollWindow, 410
//     when the session is gone (phoenix.js then reconnects and rejoins).
//   - POST with T: a batch of frames, one per line (application/x-ndjson;
//     a line not starting with '[' or '{' is a base64 binary frame), or
//     one frame as the whole body; 200 once each was handled in order.
//
// A session is a conn like a WebSocket's (same serializer, channels,
// pushes, inbound rate, send queue and frame size), whose queue the GETs
// drain. It ends LongPollIdle after its last poll, at its user token's
// expiry, when its queue overflows, or at shutdown.
//
// Errors of the client's doing are answered with their own HTTP status in
// the JSON error shape, plus the "status" phoenix.js reads: 403 (origin,
// vsn, user token), 400 (a frame that does not decode: nothing of the
// batch is run and the session stays), 413 (a frame over
// WS_MAX_FRAME_BYTES, a body over MAX_BODY_BYTES); other methods get the
// router's 405.
//
// Across replicas: a session lives on the replica that started it, and
// its token names that replica (its node id). A request that reaches
// another replica is proxied to the owner, found in the node registry
// (gateway-ws/cluster), as Phoenix routes a poll to the session's process
// through PubSub; when the owner is gone the answer is 410. No sticky
// routing is needed.

// lpTokenPrefix starts every session token: a user's JWT never does, so
// the `token` parameter tells them apart (phoenix.js sends both under that
// name once a session started).
const lpTokenPrefix = "lp."

// lpForwardedHeader marks a request proxied from another replica; it is
// never proxied again.
const lpForwardedHeader = "X-Tidings-Longpoll-Forwarded"

// lpMaxBatch is the most frames one POST may carry (phoenix.js's
// MAX_LONGPOLL_BATCH_SIZE, Phoenix's @max_poll_batch_size).
const lpMaxBatch = 100

// longPoll holds this replica's long-poll sessions.
type longPoll struct {
	mu       sync.Mutex
	sessions map[string]*lpSession // by key
}

// lpSession is a conn's long-poll transport.
type lpSession struct {
	c     *conn
	key   string // the secret part of the token
	token string
	// wake gets a value when frames are queued (flush).
	wake chan struct{}
	// inbound is held while a POST's frames are handled: it makes the
	// POSTs the conn's one reader, as a WebSocket's reader goroutine is.
	inbound sync.Mutex

	mu       sync.Mutex
	polling  int           // GETs waiting now
	kick     chan struct{} // closed to end the waiting GET when a newer one comes
	lastPoll time.Time     // when the last GET ended
	idle     *time.Timer
}

func (s *lpSession) flush() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// shut has nothing to tell: the next poll answers 410.
func (s *lpSession) shut() {}

func (s *lpSession) release() {
	s.idle.Stop()
	lp := &s.c.srv.longPoll
	lp.mu.Lock()
	delete(lp.sessions, s.key)
	lp.mu.Unlock()
}

// expireIfIdle ends the session when no poll has come for LongPollIdle.
func (s *lpSession) expireIfIdle() {
	idleFor := s.c.srv.cfg.LongPollIdle
	s.mu.Lock()
	waited := time.Since(s.lastPoll)
	idle := s.polling == 0 && waited >= idleFor
	if s.polling == 0 && !idle {
		s.idle.Reset(idleFor - waited)
	}
	s.mu.Unlock()
	if idle {
		s.c.kill(websocket.CloseNormalClosure, "idle timeout")
	}
}

// poll answers a GET: the queued frames as soon as there are some, 204
// after the window, 410 once the session is gone. A newer GET of the same
// session ends this one with 204.
func (s *lpSession) poll(w http.ResponseWriter, r *http.Request) {
	c := s.c
	kick := make(chan struct{})
	s.mu.Lock()
	if s.kick != nil {
		close(s.kick)
	}
	s.kick = kick
	s.polling++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.kick == kick {
			s.kick = nil
		}
		s.polling--
		s.lastPoll = time.Now()
		if s.polling == 0 {
			s.idle.Reset(c.srv.cfg.LongPollIdle)
		}
		s.mu.Unlock()
	}()
	window := time.NewTimer(c.srv.cfg.LongPollWindow)
	defer window.Stop()
	for {
		if frames := c.takeAll(); len(frames) > 0 {
			messages := make([]string, len(frames))
			for i, f := range frames {
				messages[i] = string(f)
			}
			c.srv.metrics.MessagesOut.Add(float64(len(frames)))
			writeLP(w, lpAnswer{Status: http.StatusOK, Token: s.token, Messages: &messages})
			return
		}
		if c.killed() {
			writeLPGone(w)
			return
		}
		select {
		case <-s.wake:
		case <-kick:
			s.noContent(w)
			return
		case <-window.C:
			s.noContent(w)
			return
		case <-c.done:
		case <-r.Context().Done():
			return // the client left; what is queued waits for its next poll
		}
	}
}

func (s *lpSession) noContent(w http.ResponseWriter) {
	empty := []string{}
	writeLP(w, lpAnswer{Status: http.StatusNoContent, Token: s.token, Messages: &empty})
}

// publish answers a POST: every frame of the batch is decoded first (one
// that does not decode refuses the whole batch with 400, and nothing of it
// is run), then each is handled in order as the socket's reader handles a
// WebSocket frame.
func (s *lpSession) publish(w http.ResponseWriter, r *http.Request) {
	c := s.c
	body, ferr := fn.ReadBody(w, r, c.srv.cfg.MaxBodyBytes)
	if ferr != nil {
		writeLPError(w, ferr)
		return
	}
	msgs, ferr := s.decodeBatch(body, r.Header.Get("Content-Type"))
	if ferr != nil {
		writeLPError(w, ferr)
		return
	}
	s.inbound.Lock()
	defer s.inbound.Unlock()
	if c.killed() {
		writeLPGone(w)
		return
	}
	defer func() {
		// A bug in a handler ends this session, as a WebSocket's panic
		// closes its socket with 1011, never the process.
		if p := recover(); p != nil {
			c.srv.log.Error("long-poll session panicked", "conn", c.id, "user", c.userID, "panic", fmt.Sprint(p))
			c.kill(websocket.CloseInternalServerErr, "internal error")
			writeLPError(w, fn.Internal())
		}
	}()
	for _, m := range msgs {
		c.srv.metrics.MessagesIn.Inc()
		c.accept(m)
	}
	writeLP(w, lpAnswer{Status: http.StatusOK})
}

// decodeBatch splits and decodes a POST's body with the session's
// serializer.
func (s *lpSession) decodeBatch(body []byte, contentType string) ([]Message, *fn.Error) {
	lines := [][]byte{body}
	if strings.HasPrefix(contentType, "application/x-ndjson") {
		lines = bytes.Split(body, []byte("\n"))
	}
	if len(lines) > lpMaxBatch {
		return nil, fn.BadRequest("a batch holds at most %d frames, got %d", lpMaxBatch, len(lines))
	}
	limit := s.c.srv.cfg.MaxFrameBytes
	msgs := make([]Message, 0, len(lines))
	for i, line := range lines {
		line = bytes.TrimSuffix(line, []byte("\r"))
		binary := len(line) > 0 && line[0] != '[' && line[0] != '{'
		if binary {
			raw, err := base64.StdEncoding.DecodeString(string(line))
			if err != nil {
				return nil, fn.BadRequest("frame %d: neither JSON nor base64", i+1)
			}
			line = raw
		}
		if int64(len(line)) > limit {
			return nil, fn.Errorf(http.StatusRequestEntityTooLarge, "too_large", "frame %d is over %d bytes", i+1, limit)
		}
		m, err := s.c.ser.decode(line, binary)
		if err != nil {
			return nil, fn.BadRequest("frame %d: %v", i+1, err)
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}
