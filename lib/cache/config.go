package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/lib/config"
)

// Config chooses a cache's store and tunes it. The zero value of every field
// but Store and Prefix means its default.
type Config struct {
	Store        Store         // CACHE_STORE: memory, redis or near (default near)
	TTL          time.Duration // CACHE_TTL: lifetime of an entry stored with ttl 0 (default 5m)
	LocalTTL     time.Duration // CACHE_LOCAL_TTL: the longest an entry stays in process memory in the near store, which bounds staleness if an invalidation is lost (default 1m)
	MaxEntries   int           // CACHE_MAX_ENTRIES: entries kept in process memory (default 100000)
	RedisTimeout time.Duration // CACHE_REDIS_TIMEOUT: deadline of each Redis call (default 250ms)
	RedisRetry   time.Duration // CACHE_REDIS_RETRY: after a Redis failure, how long reads skip Redis and go to the loader (default 1s)
	LoadTimeout  time.Duration // CACHE_LOAD_TIMEOUT: deadline of a GetOrLoad loader (default 10s)
	PingInterval time.Duration // CACHE_PING_INTERVAL: how often a quiet invalidation subscription is checked (default 5s)
	Prefix       string        // REDIS_PREFIX (config.Config.RedisPrefix): every Redis key and channel starts with it
	Logger       *slog.Logger  // nil means slog.Default()
}

// Defaults of the Config fields.
const (
	DefaultTTL          = 5 * time.Minute
	DefaultLocalTTL     = time.Minute
	DefaultMaxEntries   = 100_000
	DefaultRedisTimeout = 250 * time.Millisecond
	DefaultRedisRetry   = time.Second
	DefaultLoadTimeout  = 10 * time.Second
	DefaultPingInterval = 5 * time.Second
)

func (c Config) withDefaults() Config {
	if c.Store == "" {
		c.Store = Near
	}
	setDefault(&c.TTL, DefaultTTL)
	setDefault(&c.LocalTTL, DefaultLocalTTL)
	setDefault(&c.RedisTimeout, DefaultRedisTimeout)
	setDefault(&c.RedisRetry, DefaultRedisRetry)
	setDefault(&c.LoadTimeout, DefaultLoadTimeout)
	setDefault(&c.PingInterval, DefaultPingInterval)
	if c.MaxEntries <= 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func (c Config) validate() error {
	switch c.Store {
	case Memory, Redis, Near:
	default:
		return fmt.Errorf("cache: unknown store %q (want memory, redis or near)", c.Store)
	}
	if c.Store != Memory && c.Prefix == "" {
		return errors.New("cache: a Redis store needs a key prefix")
	}
	return nil
}

// ConfigFromEnv reads the CACHE_* variables (see Config) around the given
// Redis key prefix.
func ConfigFromEnv(prefix string) (Config, error) {
	c := Config{Store: Store(config.Env("CACHE_STORE", string(Near))), Prefix: prefix}
	durations := []struct {
		env string
		to  *time.Duration
		def time.Duration
	}{
		{"CACHE_TTL", &c.TTL, DefaultTTL},
		{"CACHE_LOCAL_TTL", &c.LocalTTL, DefaultLocalTTL},
		{"CACHE_REDIS_TIMEOUT", &c.RedisTimeout, DefaultRedisTimeout},
		{"CACHE_REDIS_RETRY", &c.RedisRetry, DefaultRedisRetry},
		{"CACHE_LOAD_TIMEOUT", &c.LoadTimeout, DefaultLoadTimeout},
		{"CACHE_PING_INTERVAL", &c.PingInterval, DefaultPingInterval},
	}
	for _, d := range durations {
		v, err := config.Duration(d.env, d.def)
		if err != nil {
			return c, err
		}
		*d.to = v
	}
	n, err := config.Int64("CACHE_MAX_ENTRIES", DefaultMaxEntries)
	if err != nil {
		return c, err
	}
	if n <= 0 || n > 1<<31-1 {
		return c, fmt.Errorf("$CACHE_MAX_ENTRIES: out of range: %s", strconv.FormatInt(n, 10))
	}
	c.MaxEntries = int(n)
	return c, c.withDefaults().validate()
}

// FromEnv builds the process's cache from the environment (see Config) and
// the process configuration's Redis prefix.
func FromEnv(cfg config.Config, rdb *redis.Client) (*Cache, error) {
	c, err := ConfigFromEnv(cfg.RedisPrefix)
	if err != nil {
		return nil, err
	}
	return New(c, rdb)
}
