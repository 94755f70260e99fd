// Package config is the one place tidings reads its environment: Parse
// fills a process's configuration structs (each already holding its
// defaults) from `env` tags, and Config.Secret reads secrets from
// OpenFaaS secret files, with an environment fallback for development.
// Library packages take plain structs and never read the environment.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultSecretsDir is where OpenFaaS mounts a function's secrets.
const DefaultSecretsDir = "/var/openfaas/secrets"

// Secret names, as created with `faas-cli secret create`.
const (
	JWTSecret   = "tidings-jwt-secret"
	InternalKey = "tidings-internal-key"
	// AdminKey is the operator's key for direct notifications (gateway-ws,
	// POST /api/notifications); env ADMIN_KEY.
	AdminKey = "tidings-admin-key"
)

// Config is what every tidings process needs to build its dependencies.
// Default holds the defaults.
type Config struct {
	DatabaseURL string `env:"DATABASE_URL"` // the directory: users, topics, subscriptions, sent mails
	// The two-phase commit's participants' own databases; empty: DatabaseURL
	// (see Databases).
	PersistDatabaseURL string        `env:"PERSIST_DATABASE_URL"` // notifications, deliveries, acks (notify-*, ack-notification, ack-all, list-notifications)
	CounterDatabaseURL string        `env:"COUNTER_DATABASE_URL"` // unread counters (counter-*, get-counter)
	RedisURL           string        `env:"REDIS_URL"`
	RedisPrefix        string        `env:"REDIS_PREFIX"` // every key and channel starts with it
	TokenTTL           time.Duration `env:"TOKEN_TTL"`
	MaxBodyBytes       int64         `env:"MAX_BODY_BYTES"`
	LogLevel           string        `env:"LOG_LEVEL"` // debug, info, warn, error
	SecretsDir         string        `env:"SECRETS_DIR"`
	Limits             Limits        // login throttles and per-user quotas

	// AuthCheckGrace is how long a process answers a token or API-key
	// check from its last answer while the cache and the directory cannot
	// answer; past it such requests get 503 (auth.GuardConfig.Grace).
	AuthCheckGrace time.Duration `env:"AUTH_CHECK_GRACE"`

	JWTSecret   []byte `env:"-"` // secret tidings-jwt-secret (env JWT_SECRET); see Complete
	InternalKey string `env:"-"` // secret tidings-internal-key (env INTERNAL_KEY); see Complete

	HTTP HTTPServer // every HTTP server's read deadlines
}

// Default is Config's defaults: the local servers `make up` and the tests
// use.
func Default() Config {
	return Config{
		DatabaseURL:  "postgres://postgres@127.0.0.1:5432/tidings?sslmode=disable",
		RedisURL:     "redis://127.0.0.1:6379/0",
		RedisPrefix:  "tidings:",
		TokenTTL:     24 * time.Hour,
		MaxBodyBytes: 64 << 10,
		LogLevel:     "info",
		SecretsDir:   DefaultSecretsDir,
		Limits:       DefaultLimits(),
		HTTP:         DefaultHTTPServer(),

		AuthCheckGrace: 10 * time.Second,
	}
}

// Databases are the URLs of tidings's three PostgreSQL databases, which
// may all be one.
type Databases struct {
	Directory string // users, topics, subscriptions, sent mails
	Persist   string // the persist participant's
	Counter   string // the counter participant's
}

// Databases returns the three databases' URLs: a participant's URL left
// empty is DatabaseURL.
func (c Config) Databases() Databases {
	return Databases{
		Directory: c.DatabaseURL,
		Persist:   cmp.Or(c.PersistDatabaseURL, c.DatabaseURL),
		Counter:   cmp.Or(c.CounterDatabaseURL, c.DatabaseURL),
	}
}

// Load is Default, then Parse, then Complete: the whole configuration of
// a process that needs nothing more.
func Load() (Config, error) {
	c := Default()
	if err := Parse(&c); err != nil {
		return c, err
	}
	return c, c.Complete()
}

// Complete checks the settings Parse filled in and reads the secrets; a
// missing secret is an error because a process without one cannot do its
// job safely.
func (c *Config) Complete() error {
	if err := errors.Join(c.HTTP.Validate(), c.Limits.Validate(), validRedisPrefix(c.RedisPrefix)); err != nil {
		return err
	}
	jwtSecret, err := c.Secret(JWTSecret)
	if err != nil {
		return err
	}
	if len(jwtSecret) < 32 {
		return fmt.Errorf("secret %s must be at least 32 bytes", JWTSecret)
	}
	c.JWTSecret = []byte(jwtSecret)
	if c.InternalKey, err = c.Secret(InternalKey); err != nil {
		return err
	}
	return nil
}

// Secret reads a secret from SecretsDir/<name>, or else from the environment
// variable named after it without the "tidings-" prefix (JWT_SECRET for
// tidings-jwt-secret).
func (c Config) Secret(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(c.SecretsDir, name))
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !os.IsNotExist(err) {
		return "", fmt.Errorf("read secret %s: %w", name, err)
	}
	env := SecretEnv(name)
	if v := os.Getenv(env); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("secret %s not found in %s nor in $%s", name, c.SecretsDir, env)
}

// SecretEnv is the environment fallback for a secret name.
func SecretEnv(name string) string {
	return strings.ToUpper(strings.ReplaceAll(strings.TrimPrefix(name, "tidings-"), "-", "_"))
}

// HTTPServer are the deadlines every tidings HTTP server (gateway-ws, the
// function host, a function's own entry point) holds its clients to, so
// that a slow or hostile client cannot keep a connection, or a function's
// concurrency slot, for long. fn.NewServer applies them; a zero field
// means its default (DefaultHTTPServer).
type HTTPServer struct {
	// ReadHeaderTimeout bounds reading a request's line and headers.
	ReadHeaderTimeout time.Duration `env:"READ_HEADER_TIMEOUT"`
	// ReadBodyTimeout bounds reading a request's body, counted from the
	// end of its headers; a client still sending then gets 408.
	ReadBodyTimeout time.Duration `env:"READ_BODY_TIMEOUT"`
	// IdleTimeout bounds how long a keep-alive connection may wait for its
	// next request.
	IdleTimeout time.Duration `env:"HTTP_IDLE_TIMEOUT"`
}

// DefaultHTTPServer is HTTPServer's defaults.
func DefaultHTTPServer() HTTPServer {
	return HTTPServer{ReadHeaderTimeout: 10 * time.Second, ReadBodyTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
}

// OrDefault sets *v to def when it is zero or negative: the one rule by
// which a package's New gives a setting left unset its default.
func OrDefault[T ~int | ~int64 | ~uint32 | ~float64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// WithDefaults returns h with every zero (or negative) field set to its
// default.
func (h HTTPServer) WithDefaults() HTTPServer {
	def := DefaultHTTPServer()
	OrDefault(&h.ReadHeaderTimeout, def.ReadHeaderTimeout)
	OrDefault(&h.ReadBodyTimeout, def.ReadBodyTimeout)
	OrDefault(&h.IdleTimeout, def.IdleTimeout)
	return h
}

// Validate refuses deadlines that are not positive.
func (h HTTPServer) Validate() error {
	return Positive(map[string]bool{
		"READ_HEADER_TIMEOUT": h.ReadHeaderTimeout > 0,
		"READ_BODY_TIMEOUT":   h.ReadBodyTimeout > 0,
		"HTTP_IDLE_TIMEOUT":   h.IdleTimeout > 0,
	})
}

// Positive is the error naming, sorted, every setting of ok that is false
// ("A, B must be positive"), or nil.
func Positive(ok map[string]bool) error {
	var bad []string
	for name, good := range ok {
		if !good {
			bad = append(bad, name)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad) // the same answer on every run, whatever the map's order
	return fmt.Errorf("%s must be positive", strings.Join(bad, ", "))
}

// validRedisPrefix refuses a prefix holding a brace: keys take their hash
// tags ({...}) after the prefix, and on a Redis Cluster a brace in the
// prefix would become every key's hash tag, putting all in one slot.
func validRedisPrefix(prefix string) error {
	if strings.ContainsAny(prefix, "{}") {
		return fmt.Errorf("REDIS_PREFIX %q must not contain { or }: the keys' hash tags follow it", prefix)
	}
	return nil
}
