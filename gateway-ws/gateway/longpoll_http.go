package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"tidings/lib/fn"
)

// The long-poll endpoint: its answers, session tokens, new sessions, and
// requests for another replica's sessions (see longpoll.go).

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
	ser, claims, heard, refused := s.admit(r, lpUserToken(r))
	if refused != nil {
		writeLPError(w, refused)
		return
	}
	c := newConn(s, ser, s.nextID.Add(1), claims.UserID)
	c.expires = claims.ExpiresAt
	c.claims = claims
	token, key := newLPToken(s.nodes.ID())
	sess := &lpSession{c: c, key: key, token: token, wake: make(chan struct{}, 1), lastPoll: time.Now()}
	c.t = sess
	sess.idle = time.AfterFunc(s.cfg.LongPollIdle, sess.expireIfIdle)
	if !s.track(c) {
		sess.idle.Stop()
		writeLPError(w, fn.Unavailable("server shutting down"))
		return
	}
	s.signOuts.recheck(claims.UserID, heard)
	s.longPoll.mu.Lock()
	if s.longPoll.sessions == nil {
		s.longPoll.sessions = map[string]*lpSession{}
	}
	s.longPoll.sessions[key] = sess
	s.longPoll.mu.Unlock()
	stopExpiry := c.armExpiry()
	go func() {
		<-c.done
		stopExpiry()
		c.teardown()
	}()
	empty := []string{}
	writeLP(w, lpAnswer{Status: http.StatusGone, Token: token, Messages: &empty})
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
