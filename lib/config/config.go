// Package config reads a process's configuration from the environment and
// its secrets from OpenFaaS secret files, with an environment fallback for
// development.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultSecretsDir is where OpenFaaS mounts a function's secrets.
const DefaultSecretsDir = "/var/openfaas/secrets"

// Secret names, as created with `faas-cli secret create`.
const (
	JWTSecret   = "tidings-jwt-secret"
	InternalKey = "tidings-internal-key"
)

// Config is what every tidings process needs to build its dependencies.
type Config struct {
	DatabaseURL  string        // DATABASE_URL
	RedisURL     string        // REDIS_URL
	RedisPrefix  string        // REDIS_PREFIX: every key and channel starts with it
	TokenTTL     time.Duration // TOKEN_TTL
	MaxBodyBytes int64         // MAX_BODY_BYTES
	LogLevel     string        // LOG_LEVEL: debug, info, warn, error
	SecretsDir   string        // SECRETS_DIR
	Limits       Limits        // login throttles and per-user quotas; see LoadLimits

	JWTSecret   []byte // secret tidings-jwt-secret (env JWT_SECRET)
	InternalKey string // secret tidings-internal-key (env INTERNAL_KEY)

	HTTP HTTPServer // every HTTP server's read deadlines; see HTTPServer
}

// Load reads the configuration; a missing secret is an error because a
// process without one cannot do its job safely.
func Load() (Config, error) {
	c := Config{
		DatabaseURL: Env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tidings?sslmode=disable"),
		RedisURL:    Env("REDIS_URL", "redis://127.0.0.1:6379/0"),
		RedisPrefix: Env("REDIS_PREFIX", "tidings:"),
		LogLevel:    Env("LOG_LEVEL", "info"),
		SecretsDir:  Env("SECRETS_DIR", DefaultSecretsDir),
	}
	var err error
	if c.TokenTTL, err = Duration("TOKEN_TTL", 24*time.Hour); err != nil {
		return c, err
	}
	if c.MaxBodyBytes, err = Int64("MAX_BODY_BYTES", 64<<10); err != nil {
		return c, err
	}
	if c.HTTP, err = HTTPServerFromEnv(); err != nil {
		return c, err
	}
	if c.Limits, err = LoadLimits(); err != nil {
		return c, err
	}
	jwtSecret, err := c.Secret(JWTSecret)
	if err != nil {
		return c, err
	}
	if len(jwtSecret) < 32 {
		return c, fmt.Errorf("secret %s must be at least 32 bytes", JWTSecret)
	}
	c.JWTSecret = []byte(jwtSecret)
	if c.InternalKey, err = c.Secret(InternalKey); err != nil {
		return c, err
	}
	return c, nil
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

// Env returns $key, or def when it is unset or empty.
func Env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Duration parses $key as a Go duration ("10s") or whole seconds ("10").
func Duration(key string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	d, err := ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("$%s: %w", key, err)
	}
	return d, nil
}

// ParseDuration accepts "10s" or plain seconds, the two forms OpenFaaS's
// exec_timeout takes.
func ParseDuration(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("not a duration: %q", v)
	}
	return d, nil
}

// Int64 parses $key as an integer.
func Int64(key string, def int64) (int64, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("$%s: not an integer: %q", key, v)
	}
	return n, nil
}

// Map parses $key as a comma-separated list of name=value pairs
// ("login=5s,gen-avatar=30s"), for per-function settings.
func Map(key string) (map[string]string, error) {
	out := map[string]string{}
	v := strings.TrimSpace(os.Getenv(key))
	if v == "" {
		return out, nil
	}
	for _, pair := range strings.Split(v, ",") {
		name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || name == "" || value == "" {
			return nil, fmt.Errorf("$%s: %q is not name=value", key, pair)
		}
		out[strings.TrimSpace(name)] = strings.TrimSpace(value)
	}
	return out, nil
}

// HTTPServer are the deadlines every tidings HTTP server (gateway-ws, the
// function host, a function's own entry point) holds its clients to, so
// that a slow or hostile client cannot keep a connection, or a function's
// concurrency slot, for long. fn.NewServer applies them; a zero field
// means its default.
type HTTPServer struct {
	// ReadHeaderTimeout (READ_HEADER_TIMEOUT, default 10s) bounds reading
	// a request's line and headers.
	ReadHeaderTimeout time.Duration
	// ReadBodyTimeout (READ_BODY_TIMEOUT, default 10s) bounds reading a
	// request's body, counted from the end of its headers; a client still
	// sending then gets 408.
	ReadBodyTimeout time.Duration
	// IdleTimeout (HTTP_IDLE_TIMEOUT, default 2m) bounds how long a
	// keep-alive connection may wait for its next request.
	IdleTimeout time.Duration
}

// Defaults of HTTPServer.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadBodyTimeout   = 10 * time.Second
	DefaultHTTPIdleTimeout   = 2 * time.Minute
)

// WithDefaults returns h with every zero (or negative) field set to its
// default.
func (h HTTPServer) WithDefaults() HTTPServer {
	if h.ReadHeaderTimeout <= 0 {
		h.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if h.ReadBodyTimeout <= 0 {
		h.ReadBodyTimeout = DefaultReadBodyTimeout
	}
	if h.IdleTimeout <= 0 {
		h.IdleTimeout = DefaultHTTPIdleTimeout
	}
	return h
}

// HTTPServerFromEnv reads READ_HEADER_TIMEOUT, READ_BODY_TIMEOUT and
// HTTP_IDLE_TIMEOUT.
func HTTPServerFromEnv() (HTTPServer, error) {
	var h HTTPServer
	settings := []struct {
		key string
		dst *time.Duration
		def time.Duration
	}{
		{"READ_HEADER_TIMEOUT", &h.ReadHeaderTimeout, DefaultReadHeaderTimeout},
		{"READ_BODY_TIMEOUT", &h.ReadBodyTimeout, DefaultReadBodyTimeout},
		{"HTTP_IDLE_TIMEOUT", &h.IdleTimeout, DefaultHTTPIdleTimeout},
	}
	for _, s := range settings {
		d, err := Duration(s.key, s.def)
		if err != nil {
			return h, err
		}
		if d <= 0 {
			return h, fmt.Errorf("$%s must be positive", s.key)
		}
		*s.dst = d
	}
	return h, nil
}
