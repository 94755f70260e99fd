// Package cache is the one cache API of tidings, over three stores chosen by
// configuration:
//
//   - memory: process memory only (an otter W-TinyLFU cache). Nothing is
//     shared between replicas, so it suits tests, a single process, or data
//     that is never changed after it is written.
//   - redis: Redis only. Every replica sees every change at once; every read
//     costs a round trip.
//   - near: process memory in front of Redis. A replica reads its own memory
//     first, then Redis. Every Set and Delete is published on a Redis channel
//     and every replica drops the key from its memory, so a change made by one
//     replica is seen by the others as soon as the message arrives.
//
// Every entry has a TTL. [Cache.GetOrLoad] is the read path for data whose
// source of truth is the database: concurrent misses of one key in a process
// share one call of the loader (stampede protection), and when Redis is
// unreachable reads go straight to the loader, so an outage of Redis makes
// reads slower, never failed.
//
// Values are bytes at this level; [Typed] stores any JSON-encodable type
// under a namespace, which is how sessions, users, topic owners and
// subscriber lists are meant to be cached. Values are kept encoded in
// process memory too, so a caller can never change a cached value by
// changing what it got back.
//
// Every Redis key this package writes is Prefix + "cache:" + key, and the
// invalidation channel is Prefix + "cache:invalidate" (a shard channel,
// SPUBLISH/SSUBSCRIBE, on a Redis Cluster: see redisx).
package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"tidings/lib/redisx"
)

// Store names where a cache keeps its entries.
type Store string

// The stores a cache can use.
const (
	Memory Store = "memory" // process memory only
	Redis  Store = "redis"  // Redis only
	Near   Store = "near"   // process memory in front of Redis, invalidated through pub/sub
)

// ErrUnavailable wraps the failure of a Redis call: the caller may treat it
// as a miss and go to the source of truth.
var ErrUnavailable = errors.New("cache: redis unavailable")

// Cache is a cache over one of the three stores. Its methods are safe for
// concurrent use. Close it to stop its invalidation listener.
type Cache struct {
	cfg    Config
	local  *otter.Cache[string, localEntry] // nil for the redis store
	rdb    redis.UniversalClient            // nil for the memory store
	log    *slog.Logger
	flight singleflight.Group
	stats  counters

	// downUntil (unix nanoseconds) is when Redis may be tried again after a
	// failure: while it is in the future, reads go straight to the loader
	// instead of each paying the Redis timeout.
	downUntil atomic.Int64

	// Near store only.
	instance string // tells this process's own invalidations from others'
	live     atomic.Bool
	seed     maphash.Seed
	epochs   [epochStripes]atomic.Uint64
	flushes  atomic.Uint64
	stop     context.CancelFunc
	done     chan struct{}
	pubsub   atomic.Pointer[redis.PubSub] // the invalidation subscription, for Close

	watchMu  sync.Mutex
	watchers []func(keys []string) // see OnChange
}

// localEntry is one entry in process memory with the lifetime it was given.
type localEntry struct {
	val []byte
	ttl time.Duration
}

// epochStripes is how many invalidation counters the near store keeps; a
// key's counter is picked by its hash. More stripes means fewer fills
// skipped because an unrelated key was invalidated meanwhile.
const epochStripes = 1024

// New builds a cache from cfg. rdb is required for the redis and near stores
// and ignored for the memory store. The near store subscribes to its
// invalidation channel before New returns (or gives up after
// cfg.RedisTimeout and serves from Redis and the loader until it succeeds).
func New(cfg Config, rdb redis.UniversalClient) (*Cache, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Cache{cfg: cfg, log: cfg.Logger, seed: maphash.MakeSeed()}
	if cfg.Store != Memory {
		if rdb == nil {
			return nil, fmt.Errorf("cache: the %s store needs a Redis client", cfg.Store)
		}
		c.rdb = rdb
	}
	if cfg.Store != Redis {
		local, err := otter.New(&otter.Options[string, localEntry]{
			MaximumSize: cfg.MaxEntries,
			ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, localEntry]) time.Duration {
				return e.Value.ttl
			}),
		})
		if err != nil {
			return nil, fmt.Errorf("cache: memory tier: %w", err)
		}
		c.local = local
	}
	if cfg.Store == Near {
		c.instance = rand.Text()
		ctx, stop := context.WithCancel(context.Background())
		c.stop = stop
		c.done = make(chan struct{})
		subscribed := make(chan struct{})
		go c.listen(ctx, subscribed)
		select {
		case <-subscribed:
		case <-time.After(cfg.RedisTimeout):
			c.log.Warn("cache: invalidation channel not subscribed yet; serving without process memory until it is",
				"channel", c.channel())
		}
	}
	return c, nil
}

// Close stops the invalidation listener and releases process memory. It does
// not close the Redis client, which the caller owns.
func (c *Cache) Close() error {
	if c.stop != nil {
		c.stop()
		// A blocked receive does not watch the context; closing the
		// connection ends it now rather than at the next ping.
		if ps := c.pubsub.Load(); ps != nil {
			_ = ps.Close()
		}
		<-c.done
	}
	if c.local != nil {
		c.local.InvalidateAll()
		c.local.StopAllGoroutines()
	}
	return nil
}

// Store reports which store the cache uses.
func (c *Cache) Store() Store { return c.cfg.Store }

// Get returns a copy of the value under key and whether it was found. A
// Redis failure is returned as an error wrapping ErrUnavailable; callers
// that have a source of truth should use GetOrLoad instead.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, ok, err := c.get(ctx, key)
	return bytes.Clone(v), ok, err
}

// get is Get without the copy: the slice may be the one in process memory,
// so only a caller that never changes it (Typed decodes it) may use it.
func (c *Cache) get(ctx context.Context, key string) ([]byte, bool, error) {
	if v, ok := c.getLocal(key); ok {
		c.stats.localHits.Add(1)
		return v, true, nil
	}
	if c.rdb == nil {
		c.stats.misses.Add(1)
		return nil, false, nil
	}
	stripe, flushes := c.epoch(key), c.flushes.Load()
	start := c.epochs[stripe].Load()
	v, found, pttl, err := c.redisGet(ctx, key)
	if err != nil {
		c.stats.misses.Add(1)
		return nil, false, err
	}
	if !found {
		c.stats.misses.Add(1)
		return nil, false, nil
	}
	c.stats.redisHits.Add(1)
	if c.local != nil {
		c.fillLocal(key, v, c.localTTL(pttl), stripe, start, flushes)
	}
	return v, true, nil
}

// Set stores val under key for ttl (cfg.TTL when ttl <= 0). In the near store
// every other replica drops its copy of key. An error means Redis was not
// updated; this process's memory then holds no copy of key either.
func (c *Cache) Set(ctx context.Context, key string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = c.cfg.TTL
	}
	val = bytes.Clone(val) // the caller may reuse its slice
	if c.rdb == nil {
		c.local.Set(key, localEntry{val: val, ttl: ttl})
		return nil
	}
	// Bump first so that a fill racing with this write cannot put the old
	// value back in memory; then snapshot, so that if another replica's
	// change lands in Redis after this one, its invalidation stops this
	// process from keeping the value it just wrote.
	c.invalidateLocal(key)
	stripe, flushes := c.epoch(key), c.flushes.Load()
	start := c.epochs[stripe].Load()
	err := c.redisCall(ctx, func(ctx context.Context) error {
		return c.writeThenInvalidate(ctx, []string{c.redisKey(key)}, func(p redis.Pipeliner, rkey string) {
			p.Set(ctx, rkey, val, ttl)
		}, c.invalidation(false, key))
	})
	if err != nil {
		return fmt.Errorf("set %s: %w", key, err)
	}
	if c.local != nil {
		c.fillLocal(key, val, min(ttl, c.cfg.LocalTTL), stripe, start, flushes)
	}
	return nil
}

// Delete removes keys from every tier; in the near store every other
// replica drops its copies too. Call it after changing the data the keys
// were loaded from.
func (c *Cache) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	if c.local != nil {
		for _, k := range keys {
			c.invalidateLocal(k)
		}
	}
	if c.rdb == nil {
		return nil
	}
	err := c.redisCall(ctx, func(ctx context.Context) error {
		rkeys := make([]string, len(keys))
		for i, k := range keys {
			rkeys[i] = c.redisKey(k)
		}
		return c.writeThenInvalidate(ctx, rkeys, func(p redis.Pipeliner, rkey string) {
			p.Del(ctx, rkey)
		}, c.invalidation(true, keys...))
	})
	if err != nil {
		return fmt.Errorf("delete %s: %w", strings.Join(keys, ","), err)
	}
	return nil
}

// writeThenInvalidate runs write for each of rkeys and then, in the near
// store, publishes msg on the invalidation channel: always in that order,
// since a replica told before the write could drop its copy, read the old
// value back from Redis and keep it.
//
// On one server it is all one MULTI, so a change is never made without
// its invalidation, and the server's append-only file keeps it. On a Redis
// Cluster the keys and the channel are in slots of their own, which no
// transaction spans: the writes go first, a key per command (a multi-key
// DEL would be refused), as one pipeline that go-redis splits by master,
// and the publish (SPUBLISH) once they are all answered. A process that
// dies between the two leaves the other replicas' copies in their memory
// for at most LocalTTL, the bound already set for an invalidation that is
// lost. The writes are not waited onto a replica (redisx.Replicated takes
// one slot, and a cache entry is a copy): a master that fails within the
// moment it takes to replicate a write may lose it, and an entry deleted
// then may come back from its promoted replica until its TTL ends.
func (c *Cache) writeThenInvalidate(ctx context.Context, rkeys []string, write func(p redis.Pipeliner, rkey string), msg string) error {
	publish := c.cfg.Store == Near
	writeAll := func(p redis.Pipeliner) {
		for _, k := range rkeys {
			write(p, k)
		}
	}
	if !redisx.Sharded(c.rdb) {
		_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			writeAll(p)
			if publish {
				redisx.PublishIn(ctx, c.rdb, p, c.channel(), msg)
			}
			return nil
		})
		return err
	}
	if _, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		writeAll(p)
		return nil
	}); err != nil {
		return err
	}
	if !publish {
		return nil
	}
	return redisx.Publish(ctx, c.rdb, c.channel(), msg).Err()
}

// GetOrLoad returns the cached value under key, or else calls load, stores
// what it returns for ttl (cfg.TTL when ttl <= 0) and returns it.
//
// Concurrent calls for one key in this process share one call of load. The
// loader runs with ctx's values but not its cancellation, under
// cfg.LoadTimeout, because callers that share it must not fail when the
// first one gives up; each caller still stops waiting when its own ctx ends.
// A Redis failure never fails the read: the value comes from load. A load
// error is returned as is and nothing is cached. The value returned is the
// caller's own copy.
func (c *Cache) GetOrLoad(ctx context.Context, key string, ttl time.Duration, load func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	v, err := c.getOrLoad(ctx, key, ttl, load)
	return bytes.Clone(v), err
}

// getOrLoad is GetOrLoad without the copy; see get.
func (c *Cache) getOrLoad(ctx context.Context, key string, ttl time.Duration, load func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	if v, ok, err := c.get(ctx, key); ok {
		return v, nil
	} else if err != nil && !errors.Is(err, ErrUnavailable) {
		return nil, err
	}
	c.stats.waiting.Add(1)
	ch := c.flight.DoChan(key, func() (any, error) {
		// A flight that finished just before this one began may have
		// stored the value already.
		if v, ok, _ := c.get(ctx, key); ok {
			return v, nil
		}
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LoadTimeout)
		defer cancel()
		c.stats.loads.Add(1)
		v, err := safeLoad(lctx, load)
		if err != nil {
			c.stats.loadErrors.Add(1)
			return nil, err
		}
		if err := c.Set(lctx, key, v, ttl); err != nil {
			c.log.Debug("cache: loaded value not stored", "key", key, "err", err)
		}
		return v, nil
	})
	select {
	case r := <-ch:
		c.stats.waiting.Add(-1)
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]byte), nil
	case <-ctx.Done():
		c.stats.waiting.Add(-1)
		return nil, ctx.Err()
	}
}

// safeLoad calls load, turning a panic into an error: singleflight runs the
// load on a goroutine of its own, where a panic would end the process
// instead of reaching the caller's recover (the function adapter's).
func safeLoad(ctx context.Context, load func(ctx context.Context) ([]byte, error)) (v []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cache: loader panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return load(ctx)
}

// getLocal reads process memory when this store has it and it can be
// trusted: in the near store only while invalidations are being received.
func (c *Cache) getLocal(key string) ([]byte, bool) {
	if c.local == nil || (c.cfg.Store == Near && !c.live.Load()) {
		return nil, false
	}
	e, ok := c.local.GetIfPresent(key)
	return e.val, ok
}

// fillLocal copies a value read from Redis into memory, unless key was
// invalidated (or memory flushed) since the read began: then the value may
// be older than the change that invalidated it. The check runs under the
// entry's lock, the same lock an invalidation takes to drop the entry, so an
// invalidation either stops the fill or removes what it wrote.
func (c *Cache) fillLocal(key string, val []byte, ttl time.Duration, stripe int, start, flushes uint64) {
	c.local.Compute(key, func(old localEntry, found bool) (localEntry, otter.ComputeOp) {
		if !c.live.Load() || c.epochs[stripe].Load() != start || c.flushes.Load() != flushes {
			return old, otter.CancelOp
		}
		return localEntry{val: val, ttl: ttl}, otter.WriteOp
	})
}

// invalidateLocal drops key from memory and stops any fill of it in flight.
func (c *Cache) invalidateLocal(key string) {
	if c.local == nil {
		return
	}
	c.epochs[c.epoch(key)].Add(1)
	c.local.Invalidate(key)
}

// flushLocal drops everything from memory and stops every fill in flight.
func (c *Cache) flushLocal() {
	c.flushes.Add(1)
	c.local.InvalidateAll()
}

func (c *Cache) epoch(key string) int {
	return int(maphash.String(c.seed, key) % epochStripes)
}

// localTTL is how long a value read from Redis may stay in memory: no longer
// than it has left in Redis, nor than cfg.LocalTTL, which bounds how stale a
// replica can get if an invalidation message is lost.
func (c *Cache) localTTL(pttl time.Duration) time.Duration {
	if pttl <= 0 {
		return c.cfg.LocalTTL
	}
	return min(pttl, c.cfg.LocalTTL)
}

// redisGet reads a value and, when process memory is to hold it too, its
// remaining lifetime, in one round trip.
func (c *Cache) redisGet(ctx context.Context, key string) (val []byte, found bool, pttl time.Duration, err error) {
	var get *redis.StringCmd
	ttlCmd := &redis.DurationCmd{}
	err = c.redisCall(ctx, func(ctx context.Context) error {
		if c.local == nil {
			get = c.rdb.Get(ctx, c.redisKey(key))
			return ignoreNil(get.Err())
		}
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			get = p.Get(ctx, c.redisKey(key))
			ttlCmd = p.PTTL(ctx, c.redisKey(key))
			return nil
		})
		return ignoreNil(err)
	})
	if err != nil {
		return nil, false, 0, fmt.Errorf("get %s: %w", key, err)
	}
	val, err = get.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, 0, nil
	}
	return val, err == nil, ttlCmd.Val(), err
}

// ignoreNil treats Redis's "no such key" as success: a miss is no failure.
func ignoreNil(err error) error {
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// redisCall runs f under cfg.RedisTimeout. A failure that is not the
// caller's own cancellation marks Redis down for cfg.RedisRetry and comes
// back wrapping ErrUnavailable.
func (c *Cache) redisCall(ctx context.Context, f func(ctx context.Context) error) error {
	if !c.redisUp() {
		return fmt.Errorf("%w (retrying after a recent failure)", ErrUnavailable)
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RedisTimeout)
	defer cancel()
	err := f(rctx)
	if err == nil {
		if c.downUntil.Swap(0) != 0 {
			c.log.Info("cache: redis reachable again")
		}
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	c.stats.redisErrors.Add(1)
	if c.downUntil.Swap(time.Now().Add(c.cfg.RedisRetry).UnixNano()) == 0 {
		c.log.Warn("cache: redis unreachable; reads go to the loader", "err", err, "retry_after", c.cfg.RedisRetry)
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

// redisUp reports whether to try Redis. After a failure it says no until
// cfg.RedisRetry has passed; then exactly one caller is let through to try,
// and the others keep saying no until that try has succeeded, so an outage
// costs one slow call per interval rather than one per read.
func (c *Cache) redisUp() bool {
	until := c.downUntil.Load()
	if until == 0 {
		return true
	}
	now := time.Now().UnixNano()
	if now < until {
		return false
	}
	return c.downUntil.CompareAndSwap(until, now+int64(c.cfg.RedisRetry))
}

func (c *Cache) redisKey(key string) string { return c.cfg.Prefix + "cache:" + key }

func (c *Cache) channel() string { return c.cfg.Prefix + "cache:invalidate" }

// Stats is a snapshot of a cache's counters, for metrics and benchmarks.
type Stats struct {
	LocalHits     uint64 // reads answered from process memory
	RedisHits     uint64 // reads answered from Redis
	Misses        uint64 // reads that found nothing (or could not ask Redis)
	Loads         uint64 // calls of a GetOrLoad loader
	LoadErrors    uint64 // loader calls that failed
	RedisErrors   uint64 // failed Redis calls
	Invalidations uint64 // keys dropped on another replica's message
	Waiting       int64  // GetOrLoad calls now waiting for a load
}

type counters struct {
	localHits, redisHits, misses, loads, loadErrors, redisErrors, invalidations atomic.Uint64
	waiting                                                                     atomic.Int64
}

// Stats returns the cache's counters since it was built.
func (c *Cache) Stats() Stats {
	return Stats{
		LocalHits:     c.stats.localHits.Load(),
		RedisHits:     c.stats.redisHits.Load(),
		Misses:        c.stats.misses.Load(),
		Loads:         c.stats.loads.Load(),
		LoadErrors:    c.stats.loadErrors.Load(),
		RedisErrors:   c.stats.redisErrors.Load(),
		Invalidations: c.stats.invalidations.Load(),
		Waiting:       c.stats.waiting.Load(),
	}
}

// OnChange registers f to hear of changes to entries, from any process:
// the near store calls it on its listener with the keys of every Delete
// (this process's own too), after they are gone from memory; and with nil
// whenever invalidations may have been missed (each time the channel is
// subscribed again, or a message is unreadable), meaning any key may have
// changed. A Set is not reported: in a read-through cache it stores what
// was loaded, and the change that matters is the Delete that follows a
// change of the source. f must not block. Only the near store hears
// changes: OnChange reports false for the others and never calls f.
func (c *Cache) OnChange(f func(keys []string)) bool {
	if c.cfg.Store != Near {
		return false
	}
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	c.watchers = append(c.watchers, f)
	return true
}

// changed tells the OnChange watchers about keys (nil: about every key).
func (c *Cache) changed(keys []string) {
	c.watchMu.Lock()
	watchers := c.watchers
	c.watchMu.Unlock()
	for _, f := range watchers {
		f(keys)
	}
}

// Live reports whether the near store is receiving invalidations and so
// reading from process memory; the other stores always report true.
func (c *Cache) Live() bool {
	return c.cfg.Store != Near || c.live.Load()
}
