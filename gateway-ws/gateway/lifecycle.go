package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/gorilla/websocket"

	"tidings/lib/catalog"
	"tidings/lib/fn"
)

// Run listens on cfg.Addr and serves until ctx ends, then shuts down
// gracefully. It is the whole gateway in one call, for main and for the
// dev stack.
func Run(ctx context.Context, cfg Config) error {
	s, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		s.closeDeps()
		return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s.log.Info("gateway-ws listening", "addr", ln.Addr().String())
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends. Then it stops accepting, closes every
// socket with 1001 (going away) so that clients reconnect to another
// replica, and releases the server's dependencies.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := fn.NewServer(s.Handler(), s.cfg.HTTP, s.log)
	served := make(chan error, 1)
	go func() { served <- hs.Serve(fn.JSONErrorListener(ln)) }()
	// Finish what a dead replica left, relay acks to the counter, and
	// watch the functions' health.
	background, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	go s.coord.RunRecovery(background)
	go s.coord.RunAckRelay(background)
	go s.calls.RunHealthChecks(background, catalog.Names())
	go s.jobs.Run(background)
	go s.revoker.run(background)
	go s.signOuts.run(background)
	leaveCluster := s.joinCluster(background, ln)
	stopPresence := s.presence.start(background)
	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	// Leave the registry first, so that peers and dashboards stop counting
	// this replica at once, not after its TTL.
	leaveCluster()
	s.shutdown(hs)
	stopPresence() // the closed sockets' leaves are written first
	s.closeDeps()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *Server) shutdown(hs *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	httpDone := make(chan struct{})
	go func() {
		_ = hs.Shutdown(ctx)
		close(httpDone)
	}()
	s.mu.Lock()
	s.closing = true
	n := len(s.conns)
	for c := range s.conns {
		c.kill(websocket.CloseGoingAway, "server shutting down")
	}
	s.mu.Unlock()
	s.log.Info("gateway-ws shutting down", "connections", n)
	connsDone := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(connsDone)
	}()
	select {
	case <-connsDone:
	case <-ctx.Done():
		s.log.Warn("shutdown timeout: connections still open")
	}
	<-httpDone
}

// Connections returns how many sockets are open.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Topics returns how many topics have members on this replica.
func (s *Server) Topics() int { return s.hub.Topics() }

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; ok {
		delete(s.conns, c)
		s.wg.Done()
	}
}
