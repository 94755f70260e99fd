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

	"tidings/functions/create-topic"
	"tidings/functions/list-topics"
	"tidings/functions/login"
	"tidings/functions/register"
	"tidings/functions/subscribe"
	"tidings/functions/unsubscribe"
	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/fn"
)

// Deps are the process's dependencies, built once at start and shared by
// every handler the process serves.
type Deps struct {
	Config config.Config
	DB     *pgxpool.Pool
	Redis  *redis.Client
	Tokens *auth.Tokens
}

// registry builds each function's handler from the dependencies.
var registry = map[string]func(d *Deps) fn.Handler{
	"register":     func(d *Deps) fn.Handler { return register.New(d.DB, d.Tokens) },
	"login":        func(d *Deps) fn.Handler { return login.New(d.DB, d.Tokens) },
	"create-topic": func(d *Deps) fn.Handler { return createtopic.New(d.DB, d.Tokens) },
	"list-topics":  func(d *Deps) fn.Handler { return listtopics.New(d.DB, d.Tokens) },
	"subscribe":    func(d *Deps) fn.Handler { return subscribe.New(d.DB, d.Tokens) },
	"unsubscribe":  func(d *Deps) fn.Handler { return unsubscribe.New(d.DB, d.Tokens) },
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
	build, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("no function named %q", name)
	}
	return build(d), nil
}

// Connect builds the dependencies from cfg: the database pool, the Redis
// client and the token issuer. Close releases them.
func Connect(ctx context.Context, cfg config.Config) (*Deps, error) {
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	return &Deps{
		Config: cfg,
		DB:     pool,
		Redis:  redis.NewClient(opts),
		Tokens: auth.NewTokens(cfg.JWTSecret, cfg.TokenTTL),
	}, nil
}

// Close releases the dependencies.
func (d *Deps) Close() {
	d.DB.Close()
	_ = d.Redis.Close()
}
