// Package functions builds the handler of every function of the catalogue
// (lib/catalog) from the dependencies it is built with: the one place that
// maps a function's name to its handler. The template's entry point and
// the local FaaS host serve functions from here; whoever needs only the
// names, methods or which are internal reads lib/catalog instead.
package functions

import (
	"context"
	"fmt"

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
	"tidings/lib/catalog"
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
	Mail      sendmail.Config      // send-mail's mail server; zero: sendmail.DefaultConfig()
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

// constructors build each function of the catalogue (lib/catalog) from
// the deps; the catalogue says which are internal.
var constructors = map[string]func(d *Deps) fn.Handler{
	"register":           func(d *Deps) fn.Handler { return register.New(d.DB, d.Tokens) },
	"login":              func(d *Deps) fn.Handler { return login.New(d.DB, d.Tokens, d.limiter(), d.Config.Limits) },
	"create-topic":       func(d *Deps) fn.Handler { return createtopic.New(d.DB, d.Tokens, d.limiter(), d.Config.Limits) },
	"list-topics":        func(d *Deps) fn.Handler { return listtopics.New(d.DB, d.Tokens) },
	"subscribe":          func(d *Deps) fn.Handler { return subscribe.New(d.DB, d.Tokens, d.directory()) },
	"unsubscribe":        func(d *Deps) fn.Handler { return unsubscribe.New(d.DB, d.Tokens, d.directory()) },
	"list-notifications": func(d *Deps) fn.Handler { return listnotifications.New(d.DB, d.Tokens) },
	"ack-notification":   func(d *Deps) fn.Handler { return acknotification.New(d.DB, d.Tokens) },
	"get-counter":        func(d *Deps) fn.Handler { return getcounter.New(d.DB, d.Tokens) },
	"gen-avatar":         func(*Deps) fn.Handler { return genavatar.New() },

	"notify-prepare":   func(d *Deps) fn.Handler { return notifyprepare.New(d.DB) },
	"notify-commit":    func(d *Deps) fn.Handler { return notifycommit.New(d.DB) },
	"notify-rollback":  func(d *Deps) fn.Handler { return notifyrollback.New(d.DB) },
	"notify-indoubt":   func(d *Deps) fn.Handler { return notifyindoubt.New(d.DB) },
	"counter-prepare":  func(d *Deps) fn.Handler { return counterprepare.New(d.DB) },
	"counter-commit":   func(d *Deps) fn.Handler { return countercommit.New(d.DB) },
	"counter-rollback": func(d *Deps) fn.Handler { return counterrollback.New(d.DB) },
	"counter-indoubt":  func(d *Deps) fn.Handler { return counterindoubt.New(d.DB) },

	"send-mail": func(d *Deps) fn.Handler { return sendmail.Build(d.DB, d.Mail, d.Config) },
}

// New builds the named function's handler; an internal function's
// (catalog.Function.Internal) refuses calls without the internal key.
func New(name string, d *Deps) (fn.Handler, error) {
	f, ok := catalog.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("no function named %q in the catalogue", name)
	}
	build, ok := constructors[name]
	if !ok {
		return nil, fmt.Errorf("function %q has no handler", name)
	}
	h := build(d)
	if f.Internal {
		h = auth.RequireInternal(d.Config.InternalKey, h)
	}
	return h, nil
}

// Connect builds the dependencies from s: the database pool, the Redis
// client, the cache and the token issuer. Close releases them.
func Connect(ctx context.Context, s Settings) (*Deps, error) {
	cfg := s.Config
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
	cc := s.Cache
	cc.Prefix = cfg.RedisPrefix
	c, err := cache.New(cc, rdb)
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
		Mail:      s.Mail,
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
