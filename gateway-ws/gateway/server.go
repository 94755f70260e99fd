// Package gateway is tidings' WebSocket gateway: Phoenix Channels V2 over
// WebSocket at /socket/websocket, fan-out across replicas through Redis
// pub/sub, and a pass-through of the public functions at /function/<name>.
//
// The pieces, one file each: protocol (the V2 frame codec), conn (one
// client socket), hub (local topic membership), broker (Redis pub/sub),
// access (who may join what), revoke (ending memberships whose right is
// gone), proxy (function pass-through), and server (configuration, HTTP
// routes, start and graceful shutdown).
package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"tidings/gateway-ws/cluster"
	"tidings/gateway-ws/coordinator"
	"tidings/gateway-ws/invoke"
	"tidings/gateway-ws/jobs"
	"tidings/gateway-ws/web"
	"tidings/lib/auth"
	"tidings/lib/cache"
	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/directory"
	"tidings/lib/fn"
	"tidings/lib/metrics"
	"tidings/lib/ratelimit"
	"tidings/lib/store"
)

// brokerCallTimeout bounds every single Redis call the gateway makes.
const brokerCallTimeout = 5 * time.Second

// Server is one gateway replica.
type Server struct {
	cfg      Config
	log      *slog.Logger
	tokens   *auth.Tokens
	access   Access
	rdb      *redis.Client
	pool     *pgxpool.Pool
	hub      *Hub
	broker   *Broker
	revoker  *revoker
	proxy    *Proxy
	limiter  *ratelimit.Limiter // per-user quotas on publishes and job enqueues
	calls    *invoke.Invoker
	coord    *coordinator.Coordinator
	nodes    *cluster.Registry
	cache    *cache.Cache
	cacheRDB *redis.Client
	dir      *directory.Directory
	jobs     *jobs.Queue
	// reg holds every metric this replica exports at /metrics.
	reg     *metrics.Registry
	metrics *metrics.Gateway
	// jobStats feeds the dashboard's job panel; nil shows "not configured".
	jobStats JobStats

	upgrader websocket.Upgrader
	nextID   atomic.Uint64

	mu      sync.Mutex
	closing bool
	conns   map[*conn]struct{}
	wg      sync.WaitGroup
}

// New connects the gateway's dependencies: Redis must answer; PostgreSQL is
// only checked, since joins of user channels work without it.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		tokens: auth.NewTokens(cfg.JWTSecret, 0),
		access: cfg.Access,
		conns:  map[*conn]struct{}{},
		hub:    NewHub(),
	}
	s.upgrader = websocket.Upgrader{
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
	opts, err := config.RedisOptions(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	if opts.ClientName == "" {
		// Named after the prefix so that operators (and tests) can tell
		// this deployment's connections apart in CLIENT LIST.
		opts.ClientName = "gateway-ws:" + cfg.RedisPrefix
	}
	s.rdb = redis.NewClient(opts)
	s.limiter = ratelimit.New(s.rdb, cfg.RedisPrefix, cfg.Limits.Timeout, s.log)
	pingCtx, cancel := context.WithTimeout(ctx, brokerCallTimeout)
	defer cancel()
	if err := s.rdb.Ping(pingCtx).Err(); err != nil {
		_ = s.rdb.Close()
		return nil, fmt.Errorf("connect to Redis: %w", err)
	}
	if s.pool, err = store.NewPool(ctx, cfg.DatabaseURL); err != nil {
		_ = s.rdb.Close()
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if err := s.pool.Ping(pingCtx); err != nil {
		s.log.Warn("PostgreSQL is not answering; topic joins will fail until it does", "err", err)
	}
	// The cache has its own connections (and client name), apart from the
	// broker's pub/sub and its short timeouts.
	cacheOpts := *opts
	cacheOpts.ClientName = "gateway-ws-cache:" + cfg.RedisPrefix
	s.cacheRDB = redis.NewClient(&cacheOpts)
	cc := cfg.Cache
	if cc.Prefix == "" {
		cc.Prefix = cfg.RedisPrefix
	}
	cc.Logger = s.log
	if s.cache, err = cache.New(cc, s.cacheRDB); err != nil {
		s.closeDeps()
		return nil, err
	}
	s.dir = directory.New(s.pool, s.cache, s.log)
	if s.access == nil {
		s.access = s.dir // join authorisation reads through the cache
	}
	s.revoker = newRevoker(s.hub, s.access, cfg.JoinTimeout, s.log)
	if !s.dir.WatchSubscriptions(s.revoker.hear) {
		s.log.Warn("the cache does not hear other processes (CACHE_STORE is not near): an unsubscribe ends a live membership only when the socket rejoins",
			"store", s.cache.Store())
	}
	s.broker, err = NewBroker(ctx, s.rdb, cfg.RedisPrefix, s.log, s.hub.deliver)
	if err != nil {
		s.closeDeps()
		return nil, err
	}
	s.hub.SetBroker(s.broker)
	s.reg = metrics.NewRegistry()
	s.metrics = metrics.NewGateway(s.reg)
	calls := cfg.Calls
	calls.FaaSURL, calls.InternalKey, calls.Log, calls.Metrics = cfg.FaaSURL, cfg.InternalKey, s.log, metrics.NewCalls(s.reg)
	s.calls = invoke.New(calls)
	if s.proxy, err = NewProxy(s.calls, catalog.Public(), cfg.MaxBodyBytes, cfg.TrustedProxies, s.log); err != nil {
		s.closeDeps()
		return nil, err
	}
	if s.jobs, err = s.newJobs(); err != nil {
		s.closeDeps()
		return nil, err
	}
	s.jobStats = func(ctx context.Context) (any, error) { return s.jobs.Stats(ctx) }
	s.coord = coordinator.New(coordinator.Config{
		Redis: s.rdb, Prefix: cfg.RedisPrefix, DB: s.pool, Lookup: s.dir, Calls: s.calls, Log: s.log, Jobs: s.jobs,
		Deliver: s.Broadcast, Settings: cfg.TwoPC, Crash: cfg.Crash, Metrics: metrics.NewTwoPC(s.reg),
	})
	if s.cfg.Publisher == nil {
		s.cfg.Publisher = coordinatorPublisher{coord: s.coord, outcomes: s.metrics.Publishes}
	}
	s.cfg.Publisher = quotaPublisher{next: s.cfg.Publisher, limiter: s.limiter, quota: ratelimit.Publishes(cfg.Limits)}
	s.exportGauges()
	s.nodes = s.newRegistry()
	return s, nil
}

func (s *Server) closeDeps() {
	if s.cache != nil {
		_ = s.cache.Close()
		_ = s.cacheRDB.Close()
	}
	if s.broker != nil {
		_ = s.broker.Close()
	}
	if s.coord != nil {
		_ = s.coord.Close()
	}
	_ = s.rdb.Close()
	if s.pool != nil {
		s.pool.Close()
	}
}

// Handler returns the gateway's HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /socket/websocket", s.serveSocket)
	mux.Handle("/function/", s.proxy)
	mux.HandleFunc("POST /internal/broadcast", s.serveBroadcast)
	mux.HandleFunc("POST /api/topics/{id}/notifications", s.servePublish)
	mux.HandleFunc("GET /healthz", s.serveHealth)
	mux.HandleFunc("GET /api/cluster", s.serveCluster)
	mux.Handle("/api/jobs/", s.jobs.Handler())
	mux.Handle("GET /metrics", metrics.Handler(s.reg))
	mux.HandleFunc("GET /api/status", s.serveStatus)
	ui := web.Handler() // the web client, the dashboard and their assets
	mux.Handle("GET /{$}", ui)
	mux.Handle("GET /dashboard", ui)
	mux.Handle("GET /assets/", ui)
	return fn.Routes(mux)
}

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
	// Finish what a dead replica left, and watch the functions' health.
	background, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	go s.coord.RunRecovery(background)
	go s.calls.RunHealthChecks(background, catalog.Names())
	go s.jobs.Run(background)
	go s.revoker.run(background)
	leaveCluster := s.joinCluster(background, ln)
	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
	}
	// Leave the registry first, so that peers and dashboards stop counting
	// this replica at once, not after its TTL.
	leaveCluster()
	s.shutdown(hs)
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

// Broadcast sends event with payload to every member of topic on every
// replica.
func (s *Server) Broadcast(ctx context.Context, topic, event string, payload any) error {
	frame, err := BroadcastFrame(topic, event, payload)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, brokerCallTimeout)
	defer cancel()
	return s.broker.Publish(ctx, topic, frame)
}

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
		fn.WriteError(w, auth.ErrUserGone) // as every function answers it
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

// broadcastRequest is the body of POST /internal/broadcast.
type broadcastRequest struct {
	Topic   string          `json:"topic"`
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload"`
}

// serveBroadcast lets tidings' own services push an event to a topic's
// members on every replica; it needs the internal key.
func (s *Server) serveBroadcast(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(auth.InternalKeyHeader)
	if s.cfg.InternalKey == "" || subtle.ConstantTimeCompare([]byte(key), []byte(s.cfg.InternalKey)) != 1 {
		fn.WriteError(w, fn.Unauthorized("missing or wrong internal key"))
		return
	}
	body, ferr := fn.ReadBody(w, r, s.cfg.MaxBodyBytes)
	if ferr != nil {
		fn.WriteError(w, ferr)
		return
	}
	var req broadcastRequest
	if err := fn.DecodeBody(body, &req); err != nil {
		fn.WriteError(w, fn.AsError(err))
		return
	}
	if kind, id := route(req.Topic); kind == kindUnmatched || id == 0 {
		fn.WriteError(w, fn.BadRequest("topic must be user:<id> or topic:<id>"))
		return
	}
	if req.Event == "" || strings.HasPrefix(req.Event, "phx_") {
		fn.WriteError(w, fn.BadRequest("event must be a non-empty name not starting with phx_"))
		return
	}
	if len(req.Payload) == 0 || req.Payload[0] != '{' {
		fn.WriteError(w, fn.BadRequest("payload must be a JSON object"))
		return
	}
	if err := s.Broadcast(r.Context(), req.Topic, req.Event, req.Payload); err != nil {
		s.log.Error("broadcast failed", "topic", req.Topic, "event", req.Event, "err", err)
		fn.WriteError(w, &fn.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "broadcast failed"})
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"redis down"}`))
		return
	}
	_, _ = fmt.Fprintf(w, `{"status":"ok","connections":%d,"topics":%d}`, s.Connections(), s.Topics())
}
