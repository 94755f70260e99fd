package gateway

import (
	"context"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"tidings/gateway-ws/cluster"
	"tidings/gateway-ws/coordinator"
	"tidings/gateway-ws/invoke"
	"tidings/lib/fn"
)

// JobStats reports the job queue's depth and ages for /api/status and the
// dashboard (for the queue: func(ctx) (any, error) { return q.Stats(ctx) }).
// A server without one shows "jobs: not configured".
type JobStats func(ctx context.Context) (any, error)

// statusTimeout bounds all the Redis reads of one status answer together,
// so the dashboard's poll gets an answer (with errors) even while Redis
// hangs.
const statusTimeout = 2 * time.Second

// newRegistry is this replica's entry in the node registry, counting its
// sockets and topics at each heartbeat.
func (s *Server) newRegistry() *cluster.Registry {
	return cluster.New(cluster.Config{
		Redis:    s.rdb,
		Prefix:   s.cfg.RedisPrefix,
		Settings: s.cfg.Cluster,
		Load:     func() (int, int) { return s.Connections(), s.Topics() },
		Log:      s.log,
	})
}

// joinCluster registers the replica under the address it serves on and
// heartbeats in the background; leave deregisters it and returns once that
// is done (or has failed: the record then expires with its TTL).
func (s *Server) joinCluster(ctx context.Context, ln net.Listener) (leave func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.nodes.Run(ctx, advertised(ln.Addr()))
	}()
	return func() {
		cancel()
		<-done
	}
}

// advertised is the listener's address, with the host name in place of an
// unspecified IP (":4000" is reached at host:4000).
func advertised(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	host, err := os.Hostname()
	if err != nil {
		return addr.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}

// clusterAnswer is GET /api/cluster.
type clusterAnswer struct {
	Self      string          `json:"self"` // the id of the replica that answered
	Nodes     []cluster.Node  `json:"nodes"`
	Functions []invoke.Status `json:"functions"`
}

var errRegistryDown = &fn.Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
	Message: "the node registry is unavailable: Redis is not answering"}

// serveCluster lists the live replicas and, as this replica sees them, the
// functions' health. Without Redis there is no list to give: 503.
func (s *Server) serveCluster(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
	defer cancel()
	nodes, err := s.nodes.Nodes(ctx)
	if err != nil {
		s.log.Warn("GET /api/cluster", "err", err)
		fn.WriteError(w, errRegistryDown)
		return
	}
	fn.WriteJSON(w, http.StatusOK, clusterAnswer{Self: s.nodes.ID(), Nodes: nodes, Functions: s.calls.Statuses()})
}

// Transactions are the coordinator's counters plus the records not yet
// finished (being published now, or waiting for recovery), as the
// coordinator tells them.
type Transactions = coordinator.Overview

// statusAnswer is GET /api/status, what the dashboard shows. A part that
// could not be read is null, with its reason in Errors; the rest is still
// answered, so the page stays useful while Redis is down.
type statusAnswer struct {
	Time         time.Time         `json:"time"`
	Self         cluster.Node      `json:"self"` // the replica that answered, as of now
	Nodes        []cluster.Node    `json:"nodes"`
	Functions    []invoke.Status   `json:"functions"`
	Transactions *Transactions     `json:"transactions"`
	Jobs         any               `json:"jobs"`
	JobsEnabled  bool              `json:"jobs_configured"`
	Errors       map[string]string `json:"errors,omitempty"`
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), statusTimeout)
	defer cancel()
	a := statusAnswer{
		Time:        time.Now().UTC(),
		Self:        s.nodes.Self(),
		Functions:   s.calls.Statuses(),
		JobsEnabled: s.jobStats != nil,
		Errors:      map[string]string{},
	}
	var err error
	if a.Nodes, err = s.nodes.Nodes(ctx); err != nil {
		a.Errors["nodes"] = "Redis is not answering"
		s.log.Warn("status: nodes", "err", err)
	}
	if tx, err := s.coord.Overview(ctx); err != nil {
		a.Errors["transactions"] = "Redis is not answering"
		s.log.Warn("status: transactions", "err", err)
	} else {
		a.Transactions = &tx
	}
	if s.jobStats != nil {
		if a.Jobs, err = s.jobStats(ctx); err != nil {
			a.Jobs = nil
			a.Errors["jobs"] = "Redis is not answering"
			s.log.Warn("status: jobs", "err", err)
		}
	}
	if len(a.Errors) == 0 {
		a.Errors = nil
	}
	w.Header().Set("Cache-Control", "no-store")
	fn.WriteJSON(w, http.StatusOK, a)
}
