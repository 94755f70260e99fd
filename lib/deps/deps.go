// Package deps builds the dependencies a tidings process shares between its
// handlers: the PostgreSQL pools (store.DBs), the Redis client, the cache (on a Redis
// client of its own) and the directory that reads users, topic owners and
// subscriber lists through that cache. The function entry point
// (functions.Connect) and gateway-ws (gateway.New) both build them here.
//
// The pool and the main Redis client connect on first use, so a process
// decides itself what must answer at start. The cache's store is the
// exception: with the near store (the default) cache.New subscribes to its
// invalidation channel on the cache's own Redis client and waits for that up
// to the cache's RedisTimeout; when Redis does not answer in time Open still
// succeeds and the cache serves without process memory until it subscribes.
package deps

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"tidings/lib/cache"
	"tidings/lib/config"
	"tidings/lib/directory"
	"tidings/lib/store"
)

// Config is what Open needs: plain values, read by the caller.
type Config struct {
	Databases   config.Databases // the three databases' URLs (store.PoolConfig's settings apply)
	RedisURL    string           // the Redis URL (config.ParseRedis: one server or a Redis Cluster)
	RedisPrefix string           // every Redis key and channel starts with it
	// ClientName, when set, names the Redis connections in CLIENT LIST so
	// that operators (and tests) can tell a deployment's apart: the main
	// client is ClientName+":"+RedisPrefix unless the URL names it, the
	// cache's ClientName+"-cache:"+RedisPrefix. Empty: as the URL says.
	ClientName string
	// Cache is the cache's settings; an empty Prefix means RedisPrefix and a
	// nil Logger means Logger.
	Cache cache.Config
	// Logger is given to the cache and the directory; nil is theirs to default.
	Logger *slog.Logger
}

// Deps are the shared dependencies Open built. Close releases them.
type Deps struct {
	DBs       store.DBs // pools on the three databases
	Redis     redis.UniversalClient
	Cache     *cache.Cache
	Directory *directory.Directory

	cacheRedis redis.UniversalClient // the cache's own connections
}

// Open builds the dependencies from cfg. On error nothing is left open.
func Open(ctx context.Context, cfg Config) (*Deps, error) {
	rc, err := config.ParseRedis(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	dbs, err := store.NewDBs(ctx, cfg.Databases)
	if err != nil {
		return nil, err
	}
	cacheRC := rc.Copy()
	if cfg.ClientName != "" {
		if rc.ClientName() == "" {
			rc.SetClientName(cfg.ClientName + ":" + cfg.RedisPrefix)
		}
		cacheRC.SetClientName(cfg.ClientName + "-cache:" + cfg.RedisPrefix)
	}
	d := &Deps{DBs: dbs, Redis: rc.Client(), cacheRedis: cacheRC.Client()}
	cc := cfg.Cache
	if cc.Prefix == "" {
		cc.Prefix = cfg.RedisPrefix
	}
	if cc.Logger == nil {
		cc.Logger = cfg.Logger
	}
	if d.Cache, err = cache.New(cc, d.cacheRedis); err != nil {
		d.Close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	d.Directory = directory.New(dbs.Directory, d.Cache, cfg.Logger)
	return d, nil
}

// Close releases every dependency Open built.
func (d *Deps) Close() {
	if d.Cache != nil {
		_ = d.Cache.Close()
	}
	_ = d.cacheRedis.Close()
	_ = d.Redis.Close()
	d.DBs.Close()
}
