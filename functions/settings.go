package functions

import (
	sendmail "tidings/functions/send-mail"
	"tidings/lib/cache"
	"tidings/lib/config"
)

// Settings are what a process serving functions is configured with: what
// every tidings process has, the cache (its key prefix is RedisPrefix),
// and send-mail's mail server. DefaultSettings holds the defaults; the
// process's entry point reads its environment over them (config.Parse).
type Settings struct {
	config.Config
	Cache cache.Config
	Mail  sendmail.Config
}

// DefaultSettings is Settings' defaults.
func DefaultSettings() Settings {
	return Settings{Config: config.Default(), Cache: cache.DefaultConfig(), Mail: sendmail.DefaultConfig()}
}
