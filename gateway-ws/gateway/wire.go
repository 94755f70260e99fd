package gateway

import (
	"context"
	"fmt"

	"tidings/gateway-ws/coordinator"
	"tidings/gateway-ws/invoke"
	"tidings/lib/auth"
	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/deps"
	"tidings/lib/metrics"
	"tidings/lib/ratelimit"
)

// connect opens the shared dependencies (lib/deps): the pool, the Redis
// client, the cache on its own connections (apart from the broker's
// pub/sub and its short timeouts) and the directory. Redis must answer;
// PostgreSQL is only checked.
func (s *Server) connect(ctx context.Context) error {
	cc := s.cfg.Cache
	cc.Logger = s.log
	d, err := deps.Open(ctx, deps.Config{
		Databases: s.cfg.Databases(), RedisURL: s.cfg.RedisURL, RedisPrefix: s.cfg.RedisPrefix,
		ClientName: "gateway-ws", Cache: cc, Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.deps, s.rdb, s.pool, s.cache, s.dir = d, d.Redis, d.DBs.Directory, d.Cache, d.Directory
	pingCtx, cancel := context.WithTimeout(ctx, brokerCallTimeout)
	defer cancel()
	if err := s.rdb.Ping(pingCtx).Err(); err != nil {
		d.Close()
		return fmt.Errorf("connect to Redis: %w", err)
	}
	if err := s.pool.Ping(pingCtx); err != nil {
		s.log.Warn("PostgreSQL is not answering; topic joins will fail until it does", "err", err)
	}
	return nil
}

// build makes the gateway's own parts on top of the shared dependencies:
// quotas, join authorisation and revocation, the broker, metrics, function
// calls and their pass-through, the job queue, the 2PC coordinator and the
// publisher, and the node registry.
func (s *Server) build(ctx context.Context) error {
	cfg := s.cfg
	s.limiter = ratelimit.New(s.rdb, cfg.RedisPrefix, cfg.Limits.Timeout, s.log)
	if s.access == nil {
		s.access = s.dir // join authorisation reads through the cache
	}
	guard, err := auth.NewGuard(s.pool, s.cache, auth.GuardConfig{Grace: cfg.AuthCheckGrace, Logger: s.log})
	if err != nil {
		return err
	}
	s.tokens = s.tokens.WithGuard(guard)
	s.signOuts = newSignOuts(s, cfg.JoinTimeout)
	if !guard.OnRevoke(s.signOuts.hear) {
		s.log.Warn("the cache does not hear other processes (CACHE_STORE is not near): a revoked token's open sockets stay open until they reconnect or expire",
			"store", s.cache.Store())
	}
	s.revoker = newRevoker(s.hub, s.access, cfg.JoinTimeout, s.log)
	if !s.dir.WatchSubscriptions(s.revoker.hear) {
		s.log.Warn("the cache does not hear other processes (CACHE_STORE is not near): an unsubscribe ends a live membership only when the socket rejoins",
			"store", s.cache.Store())
	}
	if s.broker, err = NewBroker(ctx, s.rdb, cfg.RedisPrefix, s.log, s.hub.deliver); err != nil {
		return err
	}
	s.hub.SetBroker(s.broker)
	if err = s.broker.Watch(ctx, s.broker.channel(usersTopic), s.hearUsers); err != nil {
		return err
	}
	s.broker.SetResumed(s.fillGaps)
	s.reg = metrics.NewRegistry()
	s.metrics = metrics.NewGateway(s.reg)
	calls := cfg.Calls
	calls.FaaSURL, calls.InternalKey, calls.Log, calls.Metrics = cfg.FaaSURL, cfg.InternalKey, s.log, metrics.NewCalls(s.reg)
	s.calls = invoke.New(calls)
	if s.proxy, err = NewProxy(s.calls, catalog.Public(), cfg.MaxBodyBytes, cfg.TrustedProxies, s.log); err != nil {
		return err
	}
	if s.jobs, err = s.newJobs(); err != nil {
		return err
	}
	s.jobStats = func(ctx context.Context) (any, error) { return s.jobs.Stats(ctx) }
	s.coord = coordinator.New(coordinator.Config{
		Redis: s.rdb, Prefix: cfg.RedisPrefix, DB: s.pool, Lookup: s.dir, Calls: s.calls, Log: s.log, Jobs: s.jobs,
		Deliver: s.DeliverUsers, Watch: s.broker.Watch, Settings: cfg.TwoPC, Crash: cfg.Crash, Metrics: metrics.NewTwoPC(s.reg),
	})
	if s.cfg.Publisher == nil {
		s.cfg.Publisher = coordinatorPublisher{coord: s.coord, outcomes: s.metrics.Publishes}
	}
	s.cfg.Publisher = quotaPublisher{next: s.cfg.Publisher, limiter: s.limiter, quota: ratelimit.Publishes(cfg.Limits)}
	s.exportGauges()
	s.nodes = s.newRegistry()
	config.OrDefault(&cfg.PresenceTimeout, DefaultPresenceTimeout)
	config.OrDefault(&cfg.PresenceMaxMembers, DefaultPresenceMaxMembers)
	store := &presenceStore{rdb: s.rdb, prefix: cfg.RedisPrefix, node: s.nodes.ID(), max: cfg.PresenceMaxMembers, channel: s.broker.channel}
	if s.presence, err = newPresence(store, s.nodes, s.access, cfg.PresenceTimeout, s.log); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	s.hub.left = s.presence.untrack
	return nil
}
