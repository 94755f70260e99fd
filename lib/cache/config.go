package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"tidings/lib/config"
	"tidings/lib/logging"
)

// Config chooses a cache's store and tunes it. DefaultConfig holds the
// defaults, which New also gives every zero field but Prefix.
type Config struct {
	Store        Store         `env:"CACHE_STORE"`         // memory, redis or near
	TTL          time.Duration `env:"CACHE_TTL"`           // lifetime of an entry stored with ttl 0
	LocalTTL     time.Duration `env:"CACHE_LOCAL_TTL"`     // the longest an entry stays in process memory in the near store, which bounds staleness if an invalidation is lost
	MaxEntries   int           `env:"CACHE_MAX_ENTRIES"`   // entries kept in process memory; 0 means the default, a negative value is refused
	RedisTimeout time.Duration `env:"CACHE_REDIS_TIMEOUT"` // deadline of each Redis call
	RedisRetry   time.Duration `env:"CACHE_REDIS_RETRY"`   // after a Redis failure, how long reads skip Redis and go to the loader
	LoadTimeout  time.Duration `env:"CACHE_LOAD_TIMEOUT"`  // deadline of a GetOrLoad loader
	PingInterval time.Duration `env:"CACHE_PING_INTERVAL"` // how often a quiet invalidation subscription is checked
	Prefix       string        // every Redis key and channel starts with it: the process's REDIS_PREFIX
	Logger       *slog.Logger  // nil: no logs
}

// DefaultConfig is Config's defaults.
func DefaultConfig() Config {
	return Config{
		Store:        Near,
		TTL:          5 * time.Minute,
		LocalTTL:     time.Minute,
		MaxEntries:   100_000,
		RedisTimeout: 250 * time.Millisecond,
		RedisRetry:   time.Second,
		LoadTimeout:  10 * time.Second,
		PingInterval: 5 * time.Second,
	}
}

func (c Config) withDefaults() Config {
	def := DefaultConfig()
	if c.Store == "" {
		c.Store = def.Store
	}
	config.OrDefault(&c.TTL, def.TTL)
	config.OrDefault(&c.LocalTTL, def.LocalTTL)
	config.OrDefault(&c.RedisTimeout, def.RedisTimeout)
	config.OrDefault(&c.RedisRetry, def.RedisRetry)
	config.OrDefault(&c.LoadTimeout, def.LoadTimeout)
	config.OrDefault(&c.PingInterval, def.PingInterval)
	if c.MaxEntries == 0 {
		c.MaxEntries = def.MaxEntries
	}
	c.Logger = logging.Or(c.Logger)
	return c
}

// Validate refuses an unknown store, a negative MaxEntries, and a Redis
// store without a key prefix.
func (c Config) Validate() error {
	switch c.Store {
	case Memory, Redis, Near:
	default:
		return fmt.Errorf("cache: unknown store %q (want memory, redis or near)", c.Store)
	}
	if c.MaxEntries < 0 {
		return fmt.Errorf("cache: CACHE_MAX_ENTRIES %d is negative (0 means the default, %d)", c.MaxEntries, DefaultConfig().MaxEntries)
	}
	if c.Store != Memory && c.Prefix == "" {
		return errors.New("cache: a Redis store needs a key prefix")
	}
	return nil
}
