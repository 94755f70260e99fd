package functions

import (
	sendmail "tidings/functions/send-mail"
	"tidings/lib/cache"
	"tidings/lib/config"
	"tidings/lib/twopc"
)

// Settings are what a process serving functions is configured with: what
// every tidings process has, the cache (its key prefix is RedisPrefix),
// send-mail's mail server and the acks' wait for the counter (ack-notification, ack-all). DefaultSettings holds the defaults; the
// process's entry point reads its environment over them (config.Parse).
type Settings struct {
	config.Config
	Cache cache.Config
	Mail  sendmail.Config
	Ack   twopc.AckSettings
}

// DefaultSettings is Settings' defaults.
func DefaultSettings() Settings {
	return Settings{Config: config.Default(), Cache: cache.DefaultConfig(), Mail: sendmail.DefaultConfig(), Ack: twopc.DefaultAckSettings()}
}
