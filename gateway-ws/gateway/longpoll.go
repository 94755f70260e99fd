package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
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

// lpAnswer is the body of every long-poll answer.
type lpAnswer struct {
	Status   int       `json:"status"`
	Token    string    `json:"token,omitempty"`
	Messages *[]string `json:"messages,omitempty"`
	Error    *fn.Error `json:"error,omitempty"`
}

func writeLP(w http.ResponseWriter, a lpAnswer) {
	httpStatus := http.StatusOK
	if a.Error != nil {
		httpStatus = a.Error.Status
	}
	fn.WriteJSON(w, httpStatus, a)
}

func writeLPError(w http.ResponseWriter, e *fn.Error) {
	writeLP(w, lpAnswer{Status: e.Status, Error: e})
}

func writeLPGone(w http.ResponseWriter) { writeLP(w, lpAnswer{Status: http.StatusGone}) }

func (s *Server) serveLongPoll(w http.ResponseWriter, r *http.Request) {
	// The token may travel in a header, making every poll's URL the same:
	// no cache may keep an answer.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Access-Control-Allow-Origin", "*") // the Origin header is checked instead, as Phoenix does
	if !s.originAllowed(r) {
		writeLPError(w, errBadOrigin)
		return
	}
	switch r.Method {
	case http.MethodOptions:
		w.Header().Set("Access-Control-Allow-Headers", strings.Join(r.Header.Values("Access-Control-Request-Headers"), ", "))
		w.Header().Set("Access-Control-Allow-Methods", "get, post, options")
		w.Header().Set("Access-Control-Max-Age", "3600")
		w.WriteHeader(http.StatusOK)
		return
	}
	token := lpSessionToken(r)
	if token == "" {
		if r.Method == http.MethodPost {
			writeLPGone(w)
			return
		}
		s.newLongPollSession(w, r)
		return
	}
	node, key, ok := parseLPToken(token)
	if !ok {
		writeLPGone(w)
		return
	}
	if node != s.nodes.ID() {
		s.forwardLongPoll(w, r, node)
		return
	}
	s.longPoll.mu.Lock()
	sess := s.longPoll.sessions[key]
	s.longPoll.mu.Unlock()
	if sess == nil || sess.c.killed() {
		writeLPGone(w)
		return
	}
	if r.Method == http.MethodGet {
		sess.poll(w, r)
		return
	}
	sess.publish(w, r)
}

// lpSessionToken is the session token of a request: the
// X-Phoenix-LongPoll-Token header (newer phoenix.js), else the `token`
// parameter that is one (phoenix.js appends it after the socket's own
// params, which may hold the user's token under the same name).
func lpSessionToken(r *http.Request) string {
	if t := r.Header.Get("X-Phoenix-LongPoll-Token"); t != "" {
		return t
	}
	for _, t := range r.URL.Query()["token"] {
		if strings.HasPrefix(t, lpTokenPrefix) {
			return t
		}
	}
	return ""
}

// lpUserToken is the user's token of a request that starts a session:
// the `token` parameter that is not a session token, else the
// X-Phoenix-AuthToken header (phoenix.js's authToken option).
func lpUserToken(r *http.Request) string {
	for _, t := range r.URL.Query()["token"] {
		if t != "" && !strings.HasPrefix(t, lpTokenPrefix) {
			return t
		}
	}
	return r.Header.Get("X-Phoenix-AuthToken")
}

// newLPToken is a session token "lp.<node>.<key>": the node id (base64url)
// names the replica holding the session, the key (32 random bytes) is the
// secret.
func newLPToken(node string) (token, key string) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails (Go 1.24)
	key = base64.RawURLEncoding.EncodeToString(b[:])
	return lpTokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(node)) + "." + key, key
}

func parseLPToken(token string) (node, key string, ok bool) {
	rest, ok := strings.CutPrefix(token, lpTokenPrefix)
	if !ok {
		return "", "", false
	}
	enc, key, ok := strings.Cut(rest, ".")
	if !ok || key == "" {
		return "", "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(raw) == 0 {
		return "", "", false
	}
	return string(raw), key, true
}

// newLongPollSession admits the request as a socket and starts its
// session.
func (s *Server) newLongPollSession(w http.ResponseWriter, r *http.Request) {
	ser, claims, refused := s.admit(r, lpUserToken(r))
	if refused != nil {
		writeLPError(w, refused)
		return
	}
	c := newConn(s, ser, s.nextID.Add(1), claims.UserID)
	c.expires = claims.ExpiresAt
	token, key := newLPToken(s.nodes.ID())
	sess := &lpSession{c: c, key: key, token: token, wake: make(chan struct{}, 1), lastPoll: time.Now()}
	c.t = sess
	if !s.track(c) {
		writeLPError(w, fn.Unavailable("server shutting down"))
		return
	}
	s.longPoll.mu.Lock()
	if s.longPoll.sessions == nil {
		s.longPoll.sessions = map[string]*lpSession{}
	}
	s.longPoll.sessions[key] = sess
	s.longPoll.mu.Unlock()
	sess.idle = time.AfterFunc(s.cfg.LongPollIdle, sess.expireIfIdle)
	stopExpiry := c.armExpiry()
	go func() {
		<-c.done
		stopExpiry()
		c.teardown()
	}()
	empty := []string{}
	writeLP(w, lpAnswer{Status: http.StatusGone, Token: token, Messages: &empty})
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

// forwardLongPoll passes a request for another replica's session to that
// replica; an owner that is gone (or unreachable) means the session is.
func (s *Server) forwardLongPoll(w http.ResponseWriter, r *http.Request, nodeID string) {
	if r.Header.Get(lpForwardedHeader) != "" {
		writeLPGone(w) // the owner named in the token does not hold it
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), brokerCallTimeout)
	node, ok, err := s.nodes.Node(ctx, nodeID)
	cancel()
	if err != nil {
		s.log.Warn("long-poll: looking up a session's replica failed", "node", nodeID, "err", err)
		writeLPError(w, fn.Unavailable("the node registry cannot be read"))
		return
	}
	if !ok {
		writeLPGone(w)
		return
	}
	target := &url.URL{Scheme: "http", Host: node.Addr}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // the owner checks the Origin against the host the client used
			pr.Out.Header.Set(lpForwardedHeader, s.nodes.ID())
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			s.log.Warn("long-poll: the session's replica did not answer", "node", nodeID, "addr", node.Addr, "err", err)
			writeLPGone(w)
		},
	}
	proxy.ServeHTTP(w, r)
}
