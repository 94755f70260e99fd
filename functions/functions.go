// Package functions builds the handler of every function of the catalogue
// (lib/catalog) from the dependencies it is built with: the one place that
// maps a function's name to its handler. The template's entry point and
// the local FaaS host serve functions from here; whoever needs only the
// names, methods or which are internal reads lib/catalog instead.
package functions

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	ackall "tidings/functions/ack-all"
	acknotification "tidings/functions/ack-notification"
	changepassword "tidings/functions/change-password"
	counterack "tidings/functions/counter-ack"
	countercommit "tidings/functions/counter-commit"
	counterindoubt "tidings/functions/counter-indoubt"
	counterprepare "tidings/functions/counter-prepare"
	counterread "tidings/functions/counter-read"
	counterrollback "tidings/functions/counter-rollback"
	createapikey "tidings/functions/create-api-key"
	createtopic "tidings/functions/create-topic"
	genavatar "tidings/functions/gen-avatar"
	getcounter "tidings/functions/get-counter"
	listapikeys "tidings/functions/list-api-keys"
	listnotifications "tidings/functions/list-notifications"
	listtopics "tidings/functions/list-topics"
	"tidings/functions/login"
	"tidings/functions/logout"
	logoutall "tidings/functions/logout-all"
	notifyacks "tidings/functions/notify-acks"
	notifycommit "tidings/functions/notify-commit"
	notifyindoubt "tidings/functions/notify-indoubt"
	notifyprepare "tidings/functions/notify-prepare"
	notifyrollback "tidings/functions/notify-rollback"
	notifysince "tidings/functions/notify-since"
	"tidings/functions/register"
	revokeapikey "tidings/functions/revoke-api-key"
	sendmail "tidings/functions/send-mail"
	"tidings/functions/subscribe"
	"tidings/functions/unsubscribe"
	"tidings/lib/auth"
	"tidings/lib/cache"
	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/deps"
	"tidings/lib/directory"
	"tidings/lib/fn"
	"tidings/lib/ratelimit"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Deps are the process's dependencies, built once at start and shared by
// every handler the process serves.
type Deps struct {
	Config    config.Config
	DBs       store.DBs // directory, persist and counter
	Redis     redis.UniversalClient
	Tokens    *auth.Tokens         // with a Guard (Connect's); without one, New gives each handler one on DBs.Directory and Cache
	Cache     *cache.Cache         // nil: no cache
	Directory *directory.Directory // cached lookups; nil: built on DB alone
	Mail      sendmail.Config      // send-mail's mail server; zero: sendmail.DefaultConfig()
	Ack       twopc.AckSettings    // ack-notification's and ack-all's wait for the counter; zero: its defaults
	Log       *slog.Logger         // the process's logger; nil: no logs

	shared *deps.Deps // what Connect opened, for Close
}

// directory returns the deps' Directory, or one over the deps' database
// and cache when none was built (tests build Deps by hand).
func (d *Deps) directory() *directory.Directory {
	if d.Directory != nil {
		return d.Directory
	}
	return directory.New(d.DBs.Directory, d.Cache, d.Log)
}

// limiter returns the throttles and quotas on the deps' Redis, or none
// (nil) when the deps have no Redis (tests build Deps by hand).
func (d *Deps) limiter() *ratelimit.Limiter {
	if d.Redis == nil {
		return nil
	}
	return ratelimit.New(d.Redis, d.Config.RedisPrefix, d.Config.Limits.Timeout, d.Log)
}

// tokens returns the deps' Tokens with a Guard (a new one over the
// directory and the cache when the Tokens has none: tests build Deps by
// hand), accepting API keys of scope.
func (d *Deps) tokens(scope string) (*auth.Tokens, error) {
	t := d.Tokens
	if t == nil { // internal functions only
		return nil, nil
	}
	if t.Guard() == nil {
		g, err := auth.NewGuard(d.DBs.Directory, d.Cache, auth.GuardConfig{Grace: d.Config.AuthCheckGrace, Logger: d.Log})
		if err != nil {
			return nil, err
		}
		t = t.WithGuard(g)
	}
	return t.For(scope), nil
}

// constructors build each function of the catalogue (lib/catalog) from
// the deps; the catalogue says which are internal.
var constructors = map[string]func(d *Deps) fn.Handler{
	"register": func(d *Deps) fn.Handler { return register.New(d.DBs.Directory, d.Tokens) },
	"login":    func(d *Deps) fn.Handler { return login.New(d.DBs.Directory, d.Tokens, d.limiter(), d.Config.Limits) },
	"create-topic": func(d *Deps) fn.Handler {
		return createtopic.New(d.DBs.Directory, d.Tokens, d.limiter(), d.Config.Limits)
	},
	"list-topics":        func(d *Deps) fn.Handler { return listtopics.New(d.DBs.Directory, d.Tokens) },
	"subscribe":          func(d *Deps) fn.Handler { return subscribe.New(d.DBs.Directory, d.Tokens, d.directory()) },
	"unsubscribe":        func(d *Deps) fn.Handler { return unsubscribe.New(d.DBs.Directory, d.Tokens, d.directory()) },
	"list-notifications": func(d *Deps) fn.Handler { return listnotifications.New(d.DBs.Directory, d.DBs.Persist, d.Tokens) },
	"ack-notification": func(d *Deps) fn.Handler {
		return acknotification.New(d.DBs.Directory, d.DBs.Persist, d.Tokens, d.Redis, d.Config.RedisPrefix, d.Ack, d.Log)
	},
	"ack-all": func(d *Deps) fn.Handler {
		return ackall.New(d.DBs.Directory, d.DBs.Persist, d.Tokens, d.Redis, d.Config.RedisPrefix, d.Ack, d.Log)
	},
	"get-counter": func(d *Deps) fn.Handler { return getcounter.New(d.DBs.Directory, d.DBs.Counter, d.Tokens) },
	"gen-avatar":  func(*Deps) fn.Handler { return genavatar.New() },

	// Credentials: API keys and sign-out.
	"create-api-key":  func(d *Deps) fn.Handler { return createapikey.New(d.DBs.Directory, d.Tokens) },
	"list-api-keys":   func(d *Deps) fn.Handler { return listapikeys.New(d.DBs.Directory, d.Tokens) },
	"revoke-api-key":  func(d *Deps) fn.Handler { return revokeapikey.New(d.DBs.Directory, d.Tokens) },
	"logout":          func(d *Deps) fn.Handler { return logout.New(d.Tokens) },
	"logout-all":      func(d *Deps) fn.Handler { return logoutall.New(d.Tokens) },
	"change-password": func(d *Deps) fn.Handler { return changepassword.New(d.DBs.Directory, d.Tokens) },

	"notify-prepare":   func(d *Deps) fn.Handler { return notifyprepare.New(d.DBs.Directory, d.DBs.Persist) },
	"notify-commit":    func(d *Deps) fn.Handler { return notifycommit.New(d.DBs.Persist) },
	"notify-rollback":  func(d *Deps) fn.Handler { return notifyrollback.New(d.DBs.Persist) },
	"notify-indoubt":   func(d *Deps) fn.Handler { return notifyindoubt.New(d.DBs.Persist) },
	"counter-prepare":  func(d *Deps) fn.Handler { return counterprepare.New(d.DBs.Directory, d.DBs.Counter) },
	"counter-commit":   func(d *Deps) fn.Handler { return countercommit.New(d.DBs.Counter) },
	"counter-rollback": func(d *Deps) fn.Handler { return counterrollback.New(d.DBs.Counter) },
	"counter-indoubt":  func(d *Deps) fn.Handler { return counterindoubt.New(d.DBs.Counter) },
	"counter-read":     func(d *Deps) fn.Handler { return counterread.New(d.DBs.Counter) },
	// Replay on join and gap fill (gateway-ws).
	"notify-since": func(d *Deps) fn.Handler { return notifysince.New(d.DBs.Persist) },

	// The ack relay's two ends (gateway-ws relays the persist outbox to
	// the counter).
	"notify-acks": func(d *Deps) fn.Handler { return notifyacks.New(d.DBs.Persist) },
	"counter-ack": func(d *Deps) fn.Handler { return counterack.New(d.DBs.Counter) },

	"send-mail": func(d *Deps) fn.Handler { return sendmail.Build(d.DBs.Directory, d.Mail, d.Config, d.Log) },
}

// New builds the named function's handler; an internal function's
// (catalog.Function.Internal) refuses calls without the internal key. The
// handler's Tokens accept API keys of the function's catalog.KeyScope and
// no other.
func New(name string, d *Deps) (fn.Handler, error) {
	f, ok := catalog.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("no function named %q in the catalogue", name)
	}
	build, ok := constructors[name]
	if !ok {
		return nil, fmt.Errorf("function %q has no handler", name)
	}
	tokens, err := d.tokens(f.KeyScope)
	if err != nil {
		return nil, err
	}
	scoped := *d
	scoped.Tokens = tokens
	h := build(&scoped)
	if f.Internal {
		h = auth.RequireInternal(d.Config.InternalKey, h)
	}
	return h, nil
}

// Connect builds the dependencies from s (through lib/deps, as
// gateway-ws does): the database pool, the Redis client, the cache, the
// directory and the token issuer, logging to log. Close releases them.
func Connect(ctx context.Context, s Settings, log *slog.Logger) (*Deps, error) {
	cfg := s.Config
	shared, err := deps.Open(ctx, deps.Config{
		Databases: cfg.Databases(), RedisURL: cfg.RedisURL, RedisPrefix: cfg.RedisPrefix, Cache: s.Cache, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	guard, err := auth.NewGuard(shared.DBs.Directory, shared.Cache, auth.GuardConfig{Grace: cfg.AuthCheckGrace, Logger: log})
	if err != nil {
		shared.Close()
		return nil, err
	}
	return &Deps{
		Config:    cfg,
		DBs:       shared.DBs,
		Redis:     shared.Redis,
		Tokens:    auth.NewTokens(cfg.JWTSecret, cfg.TokenTTL).WithGuard(guard),
		Cache:     shared.Cache,
		Directory: shared.Directory,
		Mail:      s.Mail,
		Ack:       s.Ack,
		Log:       log,
		shared:    shared,
	}, nil
}

// Close releases the dependencies Connect built.
func (d *Deps) Close() {
	if d.shared != nil {
		d.shared.Close()
	}
}
