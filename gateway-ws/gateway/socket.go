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
	errBadToken     = fn.Errorf(http.StatusForbidden, "unauthorized", "missing, invalid or expired token")
	errBadOrigin    = fn.Errorf(http.StatusForbidden, "forbidden", "origin not allowed")
	errKeySocket    = fn.Errorf(http.StatusForbidden, "forbidden", "an API key never opens a socket: connect with a user's token")
	errRevokedToken = fn.Errorf(http.StatusForbidden, "unauthorized", "the token was revoked (signed out)")
	errBadVersion   = fn.Errorf(http.StatusForbidden, "unsupported_vsn", "the serializers spoken are V1 (vsn=1.x) and V2 (vsn=2.x)")
)

// admit is the check every socket passes before it exists, over any
// transport, as Phoenix's connect/3: the origin, the serializer version
// (vsn), and the token of a user who still exists. A refusal is the error
// to answer.
//
// An API key never opens a socket, and a revoked token does not either;
// heard is what the tracked socket hands signOuts.recheck.
func (s *Server) admit(r *http.Request, token string) (ser serializer, claims auth.Claims, heard uint64, refused *fn.Error) {
	if !s.originAllowed(r) {
		return nil, auth.Claims{}, 0, errBadOrigin
	}
	ser, ok := serializerFor(r.URL.Query().Get("vsn"))
	if !ok {
		return nil, auth.Claims{}, 0, errBadVersion
	}
	if auth.IsAPIKey(token) {
		return nil, auth.Claims{}, 0, errKeySocket
	}
	claims, err := s.tokens.Parse(token)
	if err != nil {
		return nil, auth.Claims{}, 0, errBadToken
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.JoinTimeout)
	defer cancel()
	if userGone(ctx, s.access, claims.UserID, s.log) {
		return nil, auth.Claims{}, 0, auth.ErrUserGone() // as every function answers it
	}
	heard = s.signOuts.heard.Load()
	if err := s.tokens.Recheck(ctx, claims); err != nil {
		if e := fn.AsError(err); e == nil || e.Status == http.StatusUnauthorized {
			return nil, auth.Claims{}, 0, errRevokedToken
		}
		// Whether it is revoked cannot be told now (the directory is
		// down): the socket opens, as a user channel's join works without
		// PostgreSQL (userGone above), and is closed when the revocation
		// is heard; every function and publish fails closed meanwhile.
		s.log.Warn("socket opened without a revocation check", "user", claims.UserID, "err", err)
	}
	return ser, claims, heard, nil
}

func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	ser, claims, heard, refused := s.admit(r, socketToken(r))
	if refused != nil {
		fn.WriteError(w, refused)
		return
	}
	tap := &hijackTap{ResponseWriter: w}
	ws, err := s.upgrader.Upgrade(tap, r, nil)
	if err != nil {
		return // the upgrader has answered, in the error shape
	}
	c := newConn(s, ser, s.nextID.Add(1), claims.UserID)
	c.expires = claims.ExpiresAt
	c.claims = claims
	t := &wsTransport{c: c, ws: ws, br: tap.br}
	c.t = t
	if !s.track(c) {
		_ = ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down"), time.Now().Add(closeGrace))
		_ = ws.Close()
		return
	}
	s.signOuts.recheck(claims.UserID, heard)
	// A fresh goroutine with a small stack reads from here on; the HTTP
	// handler's, grown while serving the upgrade, ends.
	go t.serve()
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
		// Small read buffers (the hijackTap's, readBufferSize) and pooled
		// write buffers keep an idle connection cheap; frames larger than
		// the buffer still work.
		ReadBufferSize:  0,
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
