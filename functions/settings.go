package functions

import (
	acknotification "tidings/functions/ack-notification"
	sendmail "tidings/functions/send-mail"
	"tidings/lib/cache"
	"tidings/lib/config"
)

// Settings are what a process serving functions is configured with: what
// every tidings process has, the cache (its key prefix is RedisPrefix),
// send-mail's mail server and ack-notification's wait for the counter. DefaultSettings holds the defaults; the
// process's entry point reads its environment over them (config.Parse).
type Settings struct {
	config.Config
	Cache cache.Config
	Mail  sendmail.Config
	Ack   acknotification.Settings
}

// DefaultSettings is Settings' defaults.
func DefaultSettings() Settings {
	return Settings{Config: config.Default(), Cache: cache.DefaultConfig(), Mail: sendmail.DefaultConfig(), Ack: acknotification.DefaultSettings()}
}
