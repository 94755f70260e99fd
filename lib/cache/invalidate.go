package cache

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"

	"tidings/lib/redisx"
)

// invalidationMessage is what the near store publishes after a change: the
// keys every other replica must drop, who changed them, and whether it was
// a Delete (which OnChange reports) rather than a Set.
type invalidationMessage struct {
	From    string   `json:"from"`
	Keys    []string `json:"keys"`
	Deleted bool     `json:"deleted,omitempty"`
}

func (c *Cache) invalidation(deleted bool, keys ...string) string {
	b, _ := json.Marshal(invalidationMessage{From: c.instance, Keys: keys, Deleted: deleted})
	return string(b)
}

// listen receives invalidations until ctx ends. Process memory is trusted
// only while the subscription is known to be live: when it breaks, memory is
// flushed and reads go to Redis (or the loader); when it is confirmed again,
// memory is flushed once more, because messages published in between were
// lost, and then used again.
func (c *Cache) listen(ctx context.Context, subscribed chan<- struct{}) {
	defer close(c.done)
	ps := redisx.Subscribe(ctx, c.rdb, c.channel())
	c.pubsub.Store(ps)
	defer func() { _ = c.pubsub.Load().Close() }()
	first := true
	pinged := false // a ping is out and no answer came since
	waits := listenBackOff()
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, c.cfg.PingInterval)
		if m, ok := msg.(*redis.Subscription); ok && m.Kind == "sunsubscribe" && m.Channel == c.channel() {
			// Unasked: a cluster master drops its shard channels'
			// subscribers when their slot moves to another master.
			err = errSlotMoved
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var nerr net.Error
			timeout := errors.As(err, &nerr) && nerr.Timeout()
			if timeout && !pinged && ps.Ping(ctx) == nil {
				// Quiet channel: the pong proves the connection is
				// still there.
				pinged = true
				continue
			}
			pinged = false
			c.setLive(false, err)
			redisx.Relearn(ctx, c.rdb)
			select {
			case <-ctx.Done():
				return
			case <-time.After(waits.NextBackOff()):
			}
			// No answer to the last ping: the connection is dead
			// without having been closed, so start a fresh one. On a
			// cluster start one after any failure too: the channel's
			// slot may have moved or failed over to another master
			// (where go-redis's own redial, or an SSUBSCRIBE answered
			// MOVED, would not take it). On one server go-redis
			// redials by itself at the next receive.
			if timeout || redisx.Sharded(c.rdb) {
				ps = c.resubscribe(ctx, ps)
			}
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if (m.Kind == "subscribe" || m.Kind == "ssubscribe") && m.Channel == c.channel() {
				c.setLive(true, nil)
				waits.Reset()
				if first {
					first = false
					close(subscribed)
				}
				// Whatever was published while the channel was
				// not subscribed is lost.
				c.changed(nil)
			}
		case *redis.Message:
			c.apply(m.Payload)
		}
	}
}

// errSlotMoved is why the subscription was lost when its master dropped it.
var errSlotMoved = errors.New("the invalidation channel's slot moved to another master")

// resubscribe closes ps and returns a fresh subscription to the
// invalidation channel.
func (c *Cache) resubscribe(ctx context.Context, ps *redis.PubSub) *redis.PubSub {
	_ = ps.Close()
	ps = redisx.Subscribe(ctx, c.rdb, c.channel())
	c.pubsub.Store(ps)
	return ps
}

// listenBackOff spaces out the invalidation listener's reconnections:
// 50 ms doubled per failure, at most 2 s.
func listenBackOff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, Multiplier: 2, MaxInterval: 2 * time.Second}
}

// setLive records the subscription's state. Both a loss and a
// (re)subscription flush memory: messages may have been missed around either.
func (c *Cache) setLive(live bool, err error) {
	c.flushLocal()
	if c.live.Swap(live) != live {
		if live {
			c.log.Info("cache: invalidation channel subscribed; process memory in use", "channel", c.channel())
		} else {
			c.log.Warn("cache: invalidation channel lost; process memory bypassed", "channel", c.channel(), "err", err)
		}
	}
}

// apply drops the keys of another replica's change from memory.
func (c *Cache) apply(payload string) {
	var m invalidationMessage
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		// A message this version cannot read may name any key.
		c.log.Warn("cache: unreadable invalidation; flushing process memory", "err", err)
		c.flushLocal()
		c.changed(nil)
		return
	}
	if m.From != c.instance { // this process dropped its own keys already
		for _, k := range m.Keys {
			c.invalidateLocal(k)
		}
		c.stats.invalidations.Add(uint64(len(m.Keys)))
	}
	if m.Deleted && len(m.Keys) > 0 {
		c.changed(m.Keys)
	}
}
