package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"tidings/lib/auth"
	"tidings/lib/fn"
)

// CloseTokenRevoked is the close code of a socket whose token was revoked
// (logout, logout-all, change-password): the client is signed out, and a
// reconnect with the same token is refused.
const CloseTokenRevoked = 4003

// signOuts closes the sockets whose token is revoked. Every replica hears
// every revocation (auth.Guard.OnRevoke: the shared cache's invalidation
// of the user's revocations, which the revoking function sends anyway);
// each one checks its own sockets of that user again and closes those
// whose token is revoked.
type signOuts struct {
	srv     *Server
	tokens  *auth.Tokens
	timeout time.Duration // one check
	log     *slog.Logger
	users   chan int64 // users whose tokens changed; 0: any user's may have
	// heard counts the revocations heard so far. A connect reads it before
	// it checks its token and again once its socket is tracked: a
	// revocation heard in between may have found no socket to close, so
	// the socket's user is checked again.
	heard atomic.Uint64
	// overflowed is set when a change found the queue full: the next check
	// is then of every socket.
	overflowed atomic.Bool
}

func newSignOuts(s *Server, timeout time.Duration) *signOuts {
	return &signOuts{srv: s, tokens: s.tokens, timeout: timeout, log: s.log, users: make(chan int64, revokeQueue)}
}

// hear takes a revocation from the guard; it must not block.
func (o *signOuts) hear(userID int64, all bool) {
	o.heard.Add(1)
	if all {
		userID = 0
	}
	select {
	case o.users <- userID:
	default:
		o.overflowed.Store(true)
	}
}

// recheck looks again for user's sockets to close when a revocation was
// heard since heard (read by admit before its check), which may have
// found no socket of the user to close yet: a socket tracked since then
// is checked too.
func (o *signOuts) recheck(user int64, heard uint64) {
	if o.heard.Load() != heard {
		o.hear(user, false)
	}
}

// run checks the revocations heard until ctx ends.
func (o *signOuts) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case userID := <-o.users:
			if o.overflowed.Swap(false) {
				userID = 0
			}
			o.check(ctx, userID)
		}
	}
}

// check asks again whether the tokens of userID's sockets (every socket's,
// for 0) are revoked, and closes those that are. A check that gets no
// answer is tried again after revokeRetry.
func (o *signOuts) check(ctx context.Context, userID int64) {
	for _, c := range o.srv.connsOf(userID) {
		cctx, cancel := context.WithTimeout(ctx, o.timeout)
		err := o.tokens.Recheck(cctx, c.claims)
		cancel()
		switch e := fn.AsError(err); {
		case err == nil:
		case e != nil && e.Status == http.StatusUnauthorized:
			c.kill(CloseTokenRevoked, "token revoked")
		default:
			if ctx.Err() != nil {
				return
			}
			o.log.Warn("sockets not checked after a token revocation; retrying", "user", userID, "retry_in", revokeRetry, "err", err)
			time.AfterFunc(revokeRetry, func() { o.hear(userID, userID == 0) })
			return
		}
	}
}

// connsOf lists this replica's sockets of userID (every socket for 0).
func (s *Server) connsOf(userID int64) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*conn
	for c := range s.conns {
		if userID == 0 || c.userID == userID {
			out = append(out, c)
		}
	}
	return out
}
