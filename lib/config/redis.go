package config

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timeouts every Redis client of tidings uses unless its URL sets its own
// (dial_timeout, read_timeout, write_timeout). They are short so that a
// dead or partitioned Redis is noticed within seconds: go-redis's defaults
// (5s dial, 3s read and write) leave a dial to an unreachable host hanging
// for longer than a publish may take, and blocking commands (XREADGROUP
// BLOCK) get their own longer read deadline from go-redis anyway.
const (
	RedisDialTimeout  = 2 * time.Second
	RedisReadTimeout  = 3 * time.Second
	RedisWriteTimeout = 3 * time.Second
)

// RedisOptions parses a redis:// URL into client options with tidings's
// timeouts; every Redis client in the tree is built from these.
func RedisOptions(url string) (*redis.Options, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = RedisDialTimeout
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = RedisReadTimeout
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = RedisWriteTimeout
	}
	return opts, nil
}
