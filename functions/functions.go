// Package functions is the registry of every tidings function: the one
// place that maps a function's name to its handler and the dependencies it
// is built with. The template's entry point and the local FaaS host serve
// functions from here.
package functions

import (
	"context"
	"fmt"
	"sort"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"tidings/functions/ack-notification"
	"tidings/functions/counter-commit"
	"tidings/functions/counter-indoubt"
	"tidings/functions/counter-prepare"
	"tidings/functions/counter-rollback"
	"tidings/functions/create-topic"
	"tidings/functions/gen-avatar"
	"tidings/functions/get-counter"
	"tidings/functions/list-notifications"
	"tidings/functions/list-topics"
	"tidings/functions/login"
	"tidings/functions/notify-commit"
	"tidings/functions/notify-indoubt"
	"tidings/functions/notify-prepare"
	"tidings/functions/notify-rollback"
	"tidings/functions/register"
	"tidings/functions/send-mail"
	"tidings/functions/subscribe"
	"tidings/functions/unsubscribe"
	"tidings/lib/auth"
	"tidings/lib/cache"
	"tidings/lib/config"
	"tidings/lib/directory"
	"tidings/lib/fn"
	"tidings/lib/ratelimit"
	"tidings/lib/store"
)

// Deps are the process's dependencies, built once at start and shared by
// every handler the process serves.
type Deps struct {
	Config    config.Config
	DB        *pgxpool.Pool
	Redis     *redis.Client
	Tokens    *auth.Tokens
	Cache     *cache.Cache         // nil: no cache
	Directory *directory.Directory // cached lookups; nil: built on DB alone
}

// directory returns the deps' Directory, or one over the deps' database
// and cache when none was built (tests build Deps by hand).
func (d *Deps) directory() *directory.Directory {
	if d.Directory != nil {
		return d.Directory
	}
	return directory.New(d.DB, d.Cache, nil)
}

// limiter returns the throttles and quotas on the deps' Redis, or none
// (nil) when the deps have no Redis (tests build Deps by hand).
func (d *Deps) limiter() *ratelimit.Limiter {
	if d.Redis == nil {
		return nil
	}
	return ratelimit.New(d.Redis, d.Config.RedisPrefix, d.Config.Limits.Timeout, nil)
}

// entry is one function: how to build it, and whether it is internal
// (callable only with the internal key).
type entry struct {
	build    func(d *Deps) fn.Handler
	internal bool
}

// registry holds every function.
var registry = map[string]entry{
	"register":           {build: func(d *Deps) fn.Handler { return register.New(d.DB, d.Tokens) }},
	"login":              {build: func(d *Deps) fn.Handler { return login.New(d.DB, d.Tokens, d.limiter(), d.Config.Limits) }},
	"create-topic":       {build: func(d *Deps) fn.Handler { return createtopic.New(d.DB, d.Tokens, d.limiter(), d.Config.Limits) }},
	"list-topics":        {build: func(d *Deps) fn.Handler { return listtopics.New(d.DB, d.Tokens) }},
	"subscribe":          {build: func(d *Deps) fn.Handler { return subscribe.New(d.DB, d.Tokens, d.directory()) }},
	"unsubscribe":        {build: func(d *Deps) fn.Handler { return unsubscribe.New(d.DB, d.Tokens, d.directory()) }},
	"list-notifications": {build: func(d *Deps) fn.Handler { return listnotifications.New(d.DB, d.Tokens) }},
	"ack-notification":   {build: func(d *Deps) fn.Handler { return acknotification.New(d.DB, d.Tokens) }},
	"get-counter":        {build: func(d *Deps) fn.Handler { return getcounter.New(d.DB, d.Tokens) }},
	"gen-avatar":         {build: func(*Deps) fn.Handler { return genavatar.New() }},

	// The two-phase commit participants: only gateway-ws holds the key.
	"notify-prepare":   {internal: true, build: func(d *Deps) fn.Handler { return notifyprepare.New(d.DB) }},
	"notify-commit":    {internal: true, build: func(d *Deps) fn.Handler { return notifycommit.New(d.DB) }},
	"notify-rollback":  {internal: true, build: func(d *Deps) fn.Handler { return notifyrollback.New(d.DB) }},
	"counter-prepare":  {internal: true, build: func(d *Deps) fn.Handler { return counterprepare.New(d.DB) }},
	"counter-commit":   {internal: true, build: func(d *Deps) fn.Handler { return countercommit.New(d.DB) }},
	"counter-rollback": {internal: true, build: func(d *Deps) fn.Handler { return counterrollback.New(d.DB) }},
	// What each participant holds prepared: recovery finishes these even
	// when their Redis record is lost.
	"notify-indoubt":  {internal: true, build: func(d *Deps) fn.Handler { return notifyindoubt.New(d.DB) }},
	"counter-indoubt": {internal: true, build: func(d *Deps) fn.Handler { return counterindoubt.New(d.DB) }},

	// Mail goes out only through gateway-ws's job queue.
	"send-mail": {internal: true, build: func(d *Deps) fn.Handler { return sendmail.FromEnv(d.DB, d.Config) }},
}

// Names lists every function, sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for name := range registry {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// New builds the named function's handler.
func New(name string, d *Deps) (fn.Handler, error) {
	e, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("no function named %q", name)
	}
	h := e.build(d)
	if e.internal {
		h = auth.RequireInternal(d.Config.InternalKey, h)
	}
	return h, nil
}

// Internal reports whether the named function refuses calls without the
// internal key; gateway-ws passes only the others through to clients.
func Internal(name string) bool { return registry[name].internal }

// Connect builds the dependencies from cfg: the database pool, the Redis
// client and the token issuer. Close releases them.
func Connect(ctx context.Context, cfg config.Config) (*Deps, error) {
	pool, err := store.NewPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	opts, err := config.RedisOptions(cfg.RedisURL)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	rdb := redis.NewClient(opts)
	c, err := cache.FromEnv(cfg, rdb)
	if err != nil {
		pool.Close()
		_ = rdb.Close()
		return nil, fmt.Errorf("cache: %w", err)
	}
	return &Deps{
		Config:    cfg,
		DB:        pool,
		Redis:     rdb,
		Tokens:    auth.NewTokens(cfg.JWTSecret, cfg.TokenTTL),
		Cache:     c,
		Directory: directory.New(pool, c, nil),
	}, nil
}

// Close releases the dependencies.
func (d *Deps) Close() {
	if d.Cache != nil {
		_ = d.Cache.Close()
	}
	d.DB.Close()
	_ = d.Redis.Close()
}
