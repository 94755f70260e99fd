package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"tidings/gateway-ws/cluster"
	"tidings/gateway-ws/coordinator"
	"tidings/gateway-ws/invoke"
	"tidings/gateway-ws/jobs"
	"tidings/lib/cache"
	"tidings/lib/config"
	"tidings/lib/logging"
	"tidings/lib/twopc"
)

// Config is everything the gateway needs. DefaultConfig holds the
// defaults; gateway-ws reads its environment over them (config.Parse, the
// variables in the `env` tags) and then calls Complete.
type Config struct {
	config.Config

	// AdminKey is the operator's key for direct notifications (POST
	// /api/notifications): the secret tidings-admin-key, else $ADMIN_KEY
	// (config.Config.Secret), read by Complete. Empty: that endpoint
	// admits nobody.
	AdminKey string `env:"-"`

	Addr    string `env:"GATEWAY_ADDR"`
	FaaSURL string `env:"FAAS_URL"` // where /function/<name> is passed to

	// AllowedOrigins (comma-separated) are the Origin values a browser
	// socket may come from: "*" allows any, empty allows only the
	// gateway's own host (what Phoenix's check_origin does).
	AllowedOrigins []string `env:"WS_ALLOWED_ORIGINS"`
	// TrustedProxies (comma-separated addresses and CIDR ranges) are the
	// reverse proxies in front of the gateway whose X-Forwarded-For it
	// believes; by default it believes none and tells functions the peer's
	// address.
	TrustedProxies []string `env:"GATEWAY_TRUSTED_PROXIES"`

	MaxFrameBytes  int64         `env:"WS_MAX_FRAME_BYTES"` // larger frames close the socket with 1009
	SendQueue      int           `env:"WS_SEND_QUEUE"`      // frames queued per connection before it counts as too slow
	IdleTimeout    time.Duration `env:"WS_IDLE_TIMEOUT"`    // a socket that sends nothing (no heartbeat) for this long is closed
	WriteTimeout   time.Duration `env:"WS_WRITE_TIMEOUT"`   // one frame write may take this long
	InboundRate    float64       `env:"WS_INBOUND_RATE"`    // frames per second a client may send, sustained
	InboundBurst   int           `env:"WS_INBOUND_BURST"`   // frames a client may send at once
	JoinTimeout    time.Duration `env:"WS_JOIN_TIMEOUT"`    // authorising and subscribing one join
	PublishTimeout time.Duration `env:"PUBLISH_TIMEOUT"`    // one publish push
	// ReplayMax is how many notifications a join of user:<id> with
	// {"since": id} replays at most; past it the reply says truncated
	// and the client pages the rest with list-notifications. 1 to
	// twopc.MaxSince-1; 0 is the default, 500.
	ReplayMax int `env:"REPLAY_MAX"`

	// LongPollWindow is how long a long-poll GET waits for frames before
	// it answers 204 (Phoenix's window_ms); keep it under phoenix.js's
	// longpollerTimeout (20 s by default). Default 10 s (also when zero).
	LongPollWindow time.Duration `env:"LONGPOLL_WINDOW"`
	// LongPollIdle is how long a long-poll session lives without a poll
	// (none waiting, none begun since the last one ended) before it is
	// closed and its channels left; Phoenix's is 1.5 windows. Default 15 s
	// (also when zero).
	LongPollIdle time.Duration `env:"LONGPOLL_IDLE_TIMEOUT"`

	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT"` // how long closing sockets may take
	// PresenceTimeout bounds how long the members of a replica that died
	// stay present on topic:<id> (presence.go): its node record's TTL plus
	// the interval at which replicas look for dead ones. It must exceed
	// NODE_TTL; zero means DefaultPresenceTimeout.
	PresenceTimeout time.Duration `env:"PRESENCE_TIMEOUT"`
	// PresenceMaxMembers is how many members of one topic presence tracks
	// at most; later joiners get the state but are not tracked themselves,
	// so that a join costs at most that many entries and diffs, however
	// many subscribers the topic has. Zero means DefaultPresenceMaxMembers.
	PresenceMaxMembers int `env:"PRESENCE_MAX_MEMBERS"`

	// Calls are the settings of every function call the gateway makes
	// (pass-through and 2PC): timeouts, concurrency limits, breakers, health
	// checks. Its FaaSURL and InternalKey are the gateway's.
	Calls invoke.Config
	// TwoPC are the coordinator's timings.
	TwoPC coordinator.Settings
	// Cache is the shared cache's settings. Its key prefix defaults to
	// RedisPrefix.
	Cache cache.Config
	// Jobs are the job queue's settings. Its key prefix defaults to
	// RedisPrefix + "jobs:" (see jobsConfig).
	Jobs jobs.Config
	// Cluster is the node registry's heartbeat and TTL (zero values get
	// the defaults).
	Cluster cluster.Settings
	// Crash, when set, may stop the process at a 2PC fault point (chaos).
	Crash func(coordinator.Fault) bool

	// Access answers join and publish questions; nil means the database.
	Access Access
	// Publisher runs `publish` pushes; nil answers them "unavailable".
	Publisher Publisher
	// Logger; nil: no logs.
	Logger *slog.Logger
}

// The long-poll defaults, Phoenix's (window_ms and 1.5 windows of idle).
const (
	defaultLongPollWindow = 10 * time.Second
	defaultLongPollIdle   = 15 * time.Second
)

// DefaultConfig is Config's defaults, its parts' defaults included.
func DefaultConfig() Config {
	return Config{
		Config:             config.Default(),
		Addr:               ":4000",
		FaaSURL:            "http://127.0.0.1:8080",
		MaxFrameBytes:      64 << 10,
		SendQueue:          256,
		IdleTimeout:        60 * time.Second,
		WriteTimeout:       10 * time.Second,
		InboundRate:        50,
		InboundBurst:       100,
		JoinTimeout:        5 * time.Second,
		PublishTimeout:     15 * time.Second,
		ReplayMax:          defaultReplayMax,
		LongPollWindow:     defaultLongPollWindow,
		LongPollIdle:       defaultLongPollIdle,
		ShutdownTimeout:    10 * time.Second,
		PresenceTimeout:    DefaultPresenceTimeout,
		PresenceMaxMembers: DefaultPresenceMaxMembers,
		Calls:              invoke.DefaultConfig(),
		TwoPC:              coordinator.DefaultSettings(),
		Cache:              cache.DefaultConfig(),
		Jobs:               jobs.DefaultConfig(),
		Cluster:            cluster.DefaultSettings(),
	}
}

// Complete checks the settings read from the environment, those New
// would refuse included, and reads the secrets (config.Config.Complete).
func (c *Config) Complete() error {
	if err := c.Config.Complete(); err != nil {
		return err
	}
	// Optional: a gateway without one runs, refusing direct notifications.
	if key, err := c.Secret(config.AdminKey); err == nil {
		c.AdminKey = key
	}
	cc := c.Cache
	cc.Prefix = c.RedisPrefix
	_, presenceErr := presenceSweepInterval(c.PresenceTimeout, c.Cluster.TTL)
	return errors.Join(validate(c), c.Cluster.Validate(), presenceErr, cc.Validate(), c.jobsConfig().Validate())
}

// jobsConfig is the job queue's configuration: Jobs, with its key prefix
// $JOB_PREFIX, else RedisPrefix + "jobs:". This is the one place that
// decides it.
func (c Config) jobsConfig() jobs.Config {
	jc := c.Jobs
	if jc.Prefix == "" {
		jc.Prefix = c.RedisPrefix + "jobs:"
	}
	return jc
}

// defaultReplayMax is ReplayMax's default.
const defaultReplayMax = 500

// validate fills a nil Logger and zero long-poll timings and refuses what New cannot run with,
// naming every non-positive setting, sorted.
func validate(cfg *Config) error {
	cfg.Logger = logging.Or(cfg.Logger)
	if cfg.LongPollWindow == 0 {
		cfg.LongPollWindow = defaultLongPollWindow
	}
	if cfg.LongPollIdle == 0 {
		cfg.LongPollIdle = defaultLongPollIdle
	}
	if len(cfg.JWTSecret) == 0 {
		return errors.New("gateway: JWT secret is required")
	}
	if cfg.RedisPrefix == "" {
		return errors.New("gateway: Redis prefix is required")
	}
	if err := config.Positive(map[string]bool{
		"WS_MAX_FRAME_BYTES":    cfg.MaxFrameBytes > 0,
		"WS_SEND_QUEUE":         cfg.SendQueue > 0,
		"WS_IDLE_TIMEOUT":       cfg.IdleTimeout > 0,
		"WS_WRITE_TIMEOUT":      cfg.WriteTimeout > 0,
		"WS_INBOUND_RATE":       cfg.InboundRate > 0,
		"WS_INBOUND_BURST":      cfg.InboundBurst > 0,
		"WS_JOIN_TIMEOUT":       cfg.JoinTimeout > 0,
		"PUBLISH_TIMEOUT":       cfg.PublishTimeout > 0,
		"LONGPOLL_WINDOW":       cfg.LongPollWindow > 0,
		"LONGPOLL_IDLE_TIMEOUT": cfg.LongPollIdle > 0,
		"REPLAY_MAX":            cfg.ReplayMax >= 0,
		"SHUTDOWN_TIMEOUT":      cfg.ShutdownTimeout > 0,
		"FUNCTION_TIMEOUT":      cfg.Calls.Default.Timeout > 0,
		"MAX_BODY_BYTES":        cfg.MaxBodyBytes > 0,
	}); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	config.OrDefault(&cfg.ReplayMax, defaultReplayMax)
	if cfg.ReplayMax >= twopc.MaxSince {
		return fmt.Errorf("gateway: REPLAY_MAX is %d, more than the %d one read of notify-since gives", cfg.ReplayMax, twopc.MaxSince-1)
	}
	return nil
}
