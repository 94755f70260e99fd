package gateway

import (
	"context"
	"log/slog"
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
	"tidings/lib/auth"
	"tidings/lib/cache"
	"tidings/lib/deps"
	"tidings/lib/directory"
	"tidings/lib/metrics"
	"tidings/lib/ratelimit"
)

// brokerCallTimeout bounds every single Redis call the gateway makes.
const brokerCallTimeout = 5 * time.Second

// Server is one gateway replica.
type Server struct {
	cfg     Config
	log     *slog.Logger
	tokens  *auth.Tokens
	access  Access
	rdb     redis.UniversalClient
	pool    *pgxpool.Pool
	hub     *Hub
	broker  *Broker
	revoker *revoker
	// signOuts closes the sockets whose token is revoked.
	signOuts *signOuts
	proxy    *Proxy
	limiter  *ratelimit.Limiter // per-user quotas on publishes and job enqueues
	calls    *invoke.Invoker
	coord    *coordinator.Coordinator
	nodes    *cluster.Registry
	cache    *cache.Cache
	dir      *directory.Directory
	deps     *deps.Deps // the pool, Redis clients and cache, for closeDeps
	jobs     *jobs.Queue
	// reg holds every metric this replica exports at /metrics.
	reg     *metrics.Registry
	metrics *metrics.Gateway
	// jobStats feeds the dashboard's job panel; nil shows "not configured".
	jobStats JobStats
	// presence tracks this replica's members of topic:<id> (presence.go).
	presence *presence

	// fills bounds the gap fills reading PostgreSQL at once (maxFills).
	fills chan struct{}

	upgrader websocket.Upgrader
	longPoll longPoll // the long-poll sessions of this replica
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
		cfg:      cfg,
		log:      cfg.Logger,
		tokens:   auth.NewTokens(cfg.JWTSecret, 0), // given its Guard in build
		access:   cfg.Access,
		conns:    map[*conn]struct{}{},
		hub:      NewHub(),
		fills:    make(chan struct{}, maxFills),
		upgrader: newUpgrader(),
	}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	if err := s.build(ctx); err != nil {
		s.closeDeps()
		return nil, err
	}
	return s, nil
}

func (s *Server) closeDeps() {
	if s.broker != nil {
		_ = s.broker.Close()
	}
	if s.coord != nil {
		_ = s.coord.Close()
	}
	if g := s.tokens.Guard(); g != nil {
		_ = g.Close()
	}
	s.deps.Close()
}
