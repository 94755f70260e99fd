package config

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
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

// The URL schemes that name a Redis Cluster: the seed nodes follow,
// separated by commas (redis+cluster://h1:6379,h2:6379), and the query
// takes go-redis's cluster options (ParseClusterURL's: max_redirects,
// read_only, pool_size, ...). Any one reachable seed is enough; the client
// learns the rest of the cluster from it.
const (
	RedisClusterScheme    = "redis+cluster"
	RedisClusterTLSScheme = "rediss+cluster"
)

// Redis is a parsed REDIS_URL with tidings's timeouts: one server
// (redis://, rediss://, unix://) or a Redis Cluster (redis+cluster://,
// rediss+cluster://). Every Redis client in the tree is built from one.
type Redis struct {
	single  *redis.Options
	cluster *redis.ClusterOptions
}

// ParseRedis parses a Redis URL.
func ParseRedis(raw string) (*Redis, error) {
	scheme, rest, _ := strings.Cut(raw, "://")
	if scheme != RedisClusterScheme && scheme != RedisClusterTLSScheme {
		opts, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("redis URL: %w", err)
		}
		r := &Redis{single: opts}
		r.defaults(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout)
		return r, nil
	}
	opts, err := parseClusterURL(strings.TrimSuffix(scheme, "+cluster"), rest)
	if err != nil {
		return nil, fmt.Errorf("redis cluster URL: %w", err)
	}
	r := &Redis{cluster: opts}
	r.defaults(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout)
	return r, nil
}

// parseClusterURL turns "user:pass@h1:6379,h2:6379/?q" into go-redis's
// own cluster URL form (redis://user:pass@h1:6379?addr=h2:6379&q) and
// parses that, so every option means what go-redis documents.
func parseClusterURL(scheme, rest string) (*redis.ClusterOptions, error) {
	authority, query, _ := strings.Cut(rest, "?")
	authority, path, _ := strings.Cut(authority, "/")
	if path != "" && path != "0" {
		return nil, fmt.Errorf("a Redis Cluster has only database 0, not %q", path)
	}
	userinfo, hosts, found := strings.Cut(authority, "@")
	if !found {
		userinfo, hosts = "", authority
	} else {
		userinfo += "@"
	}
	seeds := strings.Split(hosts, ",")
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, err
	}
	for _, seed := range seeds[1:] {
		q.Add("addr", seed)
	}
	u := scheme + "://" + userinfo + seeds[0]
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return redis.ParseClusterURL(u)
}

func (r *Redis) defaults(dial, read, write *time.Duration) {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{dial, RedisDialTimeout}, {read, RedisReadTimeout}, {write, RedisWriteTimeout}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
}

// RedisOf is the configuration rdb was built from, copied, so a client of
// different settings can be built on the same servers.
func RedisOf(rdb redis.UniversalClient) *Redis {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		opts := *c.Options()
		opts.PushNotificationProcessor, opts.MaintNotificationsConfig = nil, nil
		return &Redis{cluster: &opts}
	case *redis.Client:
		opts := *c.Options()
		// Per-client state a copy must not share with rdb.
		opts.PushNotificationProcessor, opts.MaintNotificationsConfig = nil, nil
		return &Redis{single: &opts}
	}
	panic(fmt.Sprintf("config.RedisOf: a %T is not a client tidings builds", rdb))
}

// IsCluster says whether the URL names a Redis Cluster.
func (r *Redis) IsCluster() bool { return r.cluster != nil }

// Client is a new client on the configured server or cluster.
func (r *Redis) Client() redis.UniversalClient {
	if r.cluster != nil {
		opts := *r.cluster
		c := redis.NewClusterClient(&opts)
		c.AddHook(relearn{c})
		return c
	}
	opts := *r.single
	return redis.NewClient(&opts)
}

// relearn makes a cluster client look its layout up again as soon as a
// command fails without an answer from the server (a dead or unreachable
// node): go-redis otherwise keeps sending a dead master's slots to it
// until its cached layout is a minute old, long after the replica took
// over. The reload is lazy: one at a time, in the background.
type relearn struct{ c *redis.ClusterClient }

func (h relearn) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h relearn) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.after(err)
		return err
	}
}

func (h relearn) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.after(err)
		return err
	}
}

func (h relearn) after(err error) {
	if NodeUnreachable(err) {
		h.c.ReloadState(context.Background())
	}
}

// NodeUnreachable says whether err is a command's failure to get an
// answer from Redis at all (as opposed to an answer that is an error,
// or redis.Nil).
func NodeUnreachable(err error) bool {
	var reply redis.Error
	return err != nil && !errors.Is(err, redis.Nil) && !errors.As(err, &reply)
}

// ClientName is the name the URL gives the connections, or "".
func (r *Redis) ClientName() string {
	if r.cluster != nil {
		return r.cluster.ClientName
	}
	return r.single.ClientName
}

// SetClientName names the connections in CLIENT LIST.
func (r *Redis) SetClientName(name string) *Redis {
	if r.cluster != nil {
		r.cluster.ClientName = name
	} else {
		r.single.ClientName = name
	}
	return r
}

// NoRetries makes every command fail at its first error, so the caller
// sees a fault at once and decides itself whether to send it again.
func (r *Redis) NoRetries() *Redis {
	if r.cluster != nil {
		r.cluster.MaxRetries = -1
	} else {
		r.single.MaxRetries = -1
	}
	return r
}

// ContextTimeouts makes a call's context deadline bound its socket reads
// and writes too (go-redis ignores it otherwise).
func (r *Redis) ContextTimeouts() *Redis {
	if r.cluster != nil {
		r.cluster.ContextTimeoutEnabled = true
	} else {
		r.single.ContextTimeoutEnabled = true
	}
	return r
}

// Copy is an independent copy, to change without changing r.
func (r *Redis) Copy() *Redis {
	if r.cluster != nil {
		opts := *r.cluster
		return &Redis{cluster: &opts}
	}
	opts := *r.single
	return &Redis{single: &opts}
}

// NewRedis is a client on the server or cluster raw names.
func NewRedis(raw string) (redis.UniversalClient, error) {
	r, err := ParseRedis(raw)
	if err != nil {
		return nil, err
	}
	return r.Client(), nil
}

// PoolSize sets the connections kept per server.
func (r *Redis) PoolSize(n int) *Redis {
	if r.cluster != nil {
		r.cluster.PoolSize = n
	} else {
		r.single.PoolSize = n
	}
	return r
}
