package gateway

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"tidings/lib/auth"
	"tidings/lib/fn"
)

// Errors of the socket endpoint. Phoenix answers a refused connect with
// 403 before any upgrade; so does the gateway.
var (
	errBadToken   = fn.Errorf(http.StatusForbidden, "unauthorized", "missing, invalid or expired token")
	errBadOrigin  = fn.Errorf(http.StatusForbidden, "forbidden", "origin not allowed")
	errBadVersion = fn.Errorf(http.StatusForbidden, "unsupported_vsn", "only the V2 serializer (vsn=2.x) is spoken")
)

func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	if !s.originAllowed(r) {
		fn.WriteError(w, errBadOrigin)
		return
	}
	q := r.URL.Query()
	if vsn := q.Get("vsn"); vsn != "" && !strings.HasPrefix(vsn, "2.") {
		fn.WriteError(w, errBadVersion)
		return
	}
	claims, err := s.tokens.Parse(socketToken(r))
	if err != nil {
		fn.WriteError(w, errBadToken)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.JoinTimeout)
	gone := userGone(ctx, s.access, claims.UserID, s.log)
	cancel()
	if gone {
		fn.WriteError(w, auth.ErrUserGone()) // as every function answers it
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered, in the error shape
	}
	c := newConn(s, ws, s.nextID.Add(1), claims.UserID)
	c.expires = claims.ExpiresAt
	if !s.track(c) {
		_ = ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"), time.Now().Add(closeGrace))
		_ = ws.Close()
		return
	}
	// A fresh goroutine with a small stack reads from here on; the HTTP
	// handler's, grown while serving the upgrade, ends.
	go c.serve()
}

// authTokenPrefix marks the token phoenix.js (authToken option) sends as a
// WebSocket subprotocol, so it stays out of URLs and logs.
const authTokenPrefix = "base64url.bearer.phx."

// socketToken takes the token from the `token` parameter, or else from
// phoenix.js's subprotocol.
func socketToken(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	for _, p := range websocket.Subprotocols(r) {
		enc, ok := strings.CutPrefix(p, authTokenPrefix)
		if !ok {
			continue
		}
		for _, e := range []*base64.Encoding{base64.RawURLEncoding, base64.RawStdEncoding} {
			if b, err := e.DecodeString(enc); err == nil {
				return string(b)
			}
		}
	}
	return ""
}

// originAllowed is the origin check: any origin for "*", the listed ones
// otherwise, and only the gateway's own host when none are listed. A
// request without Origin is not from a browser and is let through.
func (s *Server) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(s.cfg.AllowedOrigins) == 0 {
		host := strings.TrimPrefix(strings.TrimPrefix(origin, "http://"), "https://")
		return strings.EqualFold(host, r.Host)
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// newUpgrader is the gateway's WebSocket upgrader.
func newUpgrader() websocket.Upgrader {
	return websocket.Upgrader{
		// Small read buffers and pooled write buffers keep an idle
		// connection cheap; frames larger than the buffer still work.
		ReadBufferSize:  1024,
		WriteBufferSize: 4096,
		WriteBufferPool: &sync.Pool{},
		Subprotocols:    []string{"phoenix"},
		// The origin is checked before the upgrade, with a JSON answer.
		CheckOrigin: func(*http.Request) bool { return true },
		// A refused upgrade (not a WebSocket handshake, a bad version or
		// key) is answered in the JSON error shape too.
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			fn.WriteError(w, fn.Errorf(status, "bad_upgrade", "%v", reason))
		},
	}
}
