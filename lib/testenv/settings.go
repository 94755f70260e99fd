package testenv

import (
	"sync"

	"tidings/lib/config"
)

// Settings are the servers the tests (and the benchmarks, which reuse
// these helpers) run against; DefaultSettings holds the defaults.
type Settings struct {
	// AdminURL is a PostgreSQL URL allowed to create databases.
	AdminURL string `env:"TIDINGS_TEST_ADMIN_URL"`
	// RedisURL is the Redis server, used under a prefix of the test's own.
	RedisURL string `env:"TIDINGS_TEST_REDIS_URL"`
}

// DefaultSettings are the loopback servers infra/test-services.sh starts.
func DefaultSettings() Settings {
	return Settings{
		AdminURL: "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		RedisURL: "redis://127.0.0.1:6379/0",
	}
}

// settings reads Settings from the environment once per test binary; a
// bad value panics, since no test could run.
var settings = sync.OnceValue(func() Settings {
	s := DefaultSettings()
	if err := config.Parse(&s); err != nil {
		panic("testenv: " + err.Error())
	}
	return s
})

// AdminURL is the maintenance database tests create their databases from.
func AdminURL() string { return settings().AdminURL }

// RedisURL is the Redis server tests use, under their own prefix.
func RedisURL() string { return settings().RedisURL }
