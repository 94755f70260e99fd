package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"
)

// Broker fans frames out across gateway replicas through Redis pub/sub.
// One Redis connection carries every subscription of this replica, and a
// Redis channel is subscribed only while some local connection has joined
// its topic, so Redis sees one subscriber per replica per topic, never one
// per connection.
//
// The connection is checked: when it has been quiet for HealthInterval a
// PING goes out, and when its PONG (or anything else) has not come back
// within another HealthInterval the connection is taken as dead (a network
// partition leaves it half-open, and TCP would take minutes to tell) and
// replaced by a fresh one subscribed to every channel again.
type Broker struct {
	rdb    redis.UniversalClient
	prefix string // every channel starts with it
	log    *slog.Logger

	deliver func(topic string, frame []byte)
	// resumed is told of each topic whose subscription Redis confirmed
	// again after the connection failed (SetResumed); nil: nobody.
	resumed func(topic string)

	// psMu guards ps: the reader replaces it when the connection is dead,
	// while Subscribe and Unsubscribe may be using it.
	psMu sync.RWMutex
	ps   *redis.PubSub

	mu sync.Mutex
	// channels are the subscribed channels, for a fresh connection.
	channels map[string]struct{}
	// watchers are the raw Redis channels heard for the broker's whole
	// life (Watch), outside the topics' prefix, with what each calls.
	watchers map[string]func(payload string)
	// waiters are the joins waiting for Redis to confirm a SUBSCRIBE, one
	// entry per SUBSCRIBE sent, oldest first: Redis answers commands on a
	// connection in order, so the n-th confirmation for a channel belongs
	// to the n-th SUBSCRIBE sent for it.
	waiters map[string][]confirmation
	// stale are the channels subscribed while the connection failed:
	// frames published on them may have been lost until Redis confirms
	// them again.
	stale map[string]struct{}

	closed atomic.Bool
	done   chan struct{}
}

// confirmation is what one SUBSCRIBE's confirmation releases: the joins
// waiting for it (more than one after a reconnect merged them).
type confirmation []chan struct{}

// BrokerHealthInterval is how long the pub/sub connection may stay quiet
// before a PING is sent, and how long its answer may take: a dead
// connection is found within twice this.
const BrokerHealthInterval = 2 * time.Second

// brokerMaxBackoff bounds the wait between reconnection attempts, so the
// broker is back within about a dial timeout plus this once Redis is.
const brokerMaxBackoff = time.Second

// brokerBackOff spaces out the receives that fail to reach Redis: 50 ms
// doubled per failure, at most brokerMaxBackoff.
func brokerBackOff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, Multiplier: 2, MaxInterval: brokerMaxBackoff}
}

// brokerControl is subscribed for the broker's whole life: it opens the
// pub/sub connection at start, so a Redis that is down fails New at once.
const brokerControl = "_control"

// NewBroker subscribes on rdb and calls deliver for every frame published
// on a topic this replica has subscribed. deliver must not block.
func NewBroker(ctx context.Context, rdb redis.UniversalClient, prefix string, log *slog.Logger, deliver func(topic string, frame []byte)) (*Broker, error) {
	b := &Broker{
		rdb:      rdb,
		prefix:   prefix + "ws:",
		log:      log,
		deliver:  deliver,
		channels: map[string]struct{}{},
		watchers: map[string]func(string){},
		waiters:  map[string][]confirmation{},
		stale:    map[string]struct{}{},
		done:     make(chan struct{}),
	}
	control := b.channel(brokerControl)
	b.channels[control] = struct{}{}
	b.ps = rdb.Subscribe(ctx, control)
	// The first answer on a fresh pub/sub connection is the confirmation
	// of the control subscription, or the reason Redis is unreachable.
	if _, err := b.ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		_ = b.ps.Close()
		return nil, fmt.Errorf("subscribe to Redis: %w", err)
	}
	go b.run()
	return b, nil
}

func (b *Broker) channel(topic string) string { return b.prefix + topic }

// Subscribe starts receiving topic and returns a channel that is closed
// once Redis has confirmed the subscription: only then is a frame
// published afterwards on any replica sure to arrive here.
func (b *Broker) Subscribe(ctx context.Context, topic string) (<-chan struct{}, error) {
	ch := b.channel(topic)
	ready := make(chan struct{})
	b.psMu.RLock()
	defer b.psMu.RUnlock()
	b.mu.Lock()
	b.channels[ch] = struct{}{}
	b.waiters[ch] = append(b.waiters[ch], confirmation{ready})
	b.mu.Unlock()
	if err := b.ps.Subscribe(ctx, ch); err != nil {
		b.mu.Lock()
		b.waiters[ch] = removeWaiter(b.waiters[ch], ready)
		b.mu.Unlock()
		return nil, fmt.Errorf("subscribe %s: %w", ch, err)
	}
	return ready, nil
}

// Watch calls hear with the payload of every message published on the
// Redis channel named (whole: not a topic under the broker's prefix) from
// now on, for the broker's life, on the replica's one pub/sub connection;
// a reconnect subscribes it again. hear must not block. Messages lost
// while the connection is down are lost: a watcher must not depend on
// every one.
func (b *Broker) Watch(ctx context.Context, channel string, hear func(payload string)) error {
	b.psMu.RLock()
	defer b.psMu.RUnlock()
	b.mu.Lock()
	b.channels[channel] = struct{}{}
	b.watchers[channel] = hear
	b.mu.Unlock()
	if err := b.ps.Subscribe(ctx, channel); err != nil {
		return fmt.Errorf("subscribe %s: %w", channel, err)
	}
	return nil
}

func (b *Broker) watcher(channel string) func(string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.watchers[channel]
}

// Unsubscribe stops receiving topic.
func (b *Broker) Unsubscribe(ctx context.Context, topic string) error {
	ch := b.channel(topic)
	b.psMu.RLock()
	defer b.psMu.RUnlock()
	b.mu.Lock()
	delete(b.channels, ch)
	delete(b.stale, ch)
	b.mu.Unlock()
	if err := b.ps.Unsubscribe(ctx, ch); err != nil {
		return fmt.Errorf("unsubscribe %s: %w", ch, err)
	}
	return nil
}

// Publish sends frame to every replica that has subscribers on topic.
func (b *Broker) Publish(ctx context.Context, topic string, frame []byte) error {
	if err := b.rdb.Publish(ctx, b.channel(topic), frame).Err(); err != nil {
		return fmt.Errorf("publish on %s: %w", b.channel(topic), err)
	}
	return nil
}

// Close ends the subscription connection.
func (b *Broker) Close() error {
	b.closed.Store(true)
	b.psMu.RLock()
	err := b.ps.Close()
	b.psMu.RUnlock()
	<-b.done
	return err
}

func (b *Broker) pubsub() *redis.PubSub {
	b.psMu.RLock()
	defer b.psMu.RUnlock()
	return b.ps
}

// run reads the pub/sub connection until it is closed. go-redis reconnects
// and resubscribes every channel by itself after an error it sees; a
// connection that just goes silent is found by the health ping.
func (b *Broker) run() {
	defer close(b.done)
	ctx := context.Background()
	waits := brokerBackOff()
	pinged := false // a PING is out and nothing has come back since
	for {
		ps := b.pubsub()
		msg, err := ps.ReceiveTimeout(ctx, BrokerHealthInterval)
		if err != nil {
			if b.closed.Load() {
				return
			}
			if quiet(err) {
				if !pinged {
					pingCtx, cancel := context.WithTimeout(ctx, BrokerHealthInterval)
					pinged = ps.Ping(pingCtx) == nil
					cancel()
					if pinged {
						continue
					}
				}
				b.log.Warn("redis pub/sub connection does not answer; reconnecting", "err", err)
				b.lost()
				b.reconnect(ctx)
				pinged = false
				continue
			}
			if errors.Is(err, redis.ErrClosed) && ps != b.pubsub() {
				continue // replaced by a reconnect meanwhile
			}
			pinged = false
			b.lost()
			wait := waits.NextBackOff()
			b.log.Warn("redis pub/sub receive failed; retrying", "err", err, "backoff", wait)
			time.Sleep(wait)
			continue
		}
		pinged = false
		waits.Reset()
		switch m := msg.(type) {
		case *redis.Message:
			if hear := b.watcher(m.Channel); hear != nil {
				hear(m.Payload)
				continue
			}
			topic, ok := strings.CutPrefix(m.Channel, b.prefix)
			if ok && topic != brokerControl {
				b.deliver(topic, []byte(m.Payload))
			}
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				b.confirm(m.Channel)
			}
		}
	}
}

// quiet reports whether a receive ended because nothing came within its
// timeout, as opposed to failing to reach Redis at all.
func quiet(err error) bool {
	var netErr net.Error
	var opErr *net.OpError
	return errors.As(err, &netErr) && netErr.Timeout() && !(errors.As(err, &opErr) && opErr.Op == "dial")
}

// reconnect replaces the pub/sub connection by a fresh one subscribed to
// every channel. The SUBSCRIBEs still unconfirmed on the old connection
// are answered by the new connection's one SUBSCRIBE of their channel.
func (b *Broker) reconnect(ctx context.Context) {
	b.psMu.Lock()
	defer b.psMu.Unlock()
	_ = b.ps.Close()
	b.mu.Lock()
	channels := make([]string, 0, len(b.channels))
	for ch := range b.channels {
		channels = append(channels, ch)
	}
	for ch, ws := range b.waiters {
		if _, ok := b.channels[ch]; !ok {
			delete(b.waiters, ch) // unsubscribed since: never confirmed
			continue
		}
		var merged confirmation
		for _, w := range ws {
			merged = append(merged, w...)
		}
		b.waiters[ch] = []confirmation{merged}
	}
	b.mu.Unlock()
	// If Redis is still unreachable the new PubSub keeps the channels and
	// subscribes them when the next receive manages to connect.
	dialCtx, cancel := context.WithTimeout(ctx, 2*BrokerHealthInterval)
	defer cancel()
	b.ps = b.rdb.Subscribe(dialCtx, channels...)
}

func (b *Broker) confirm(ch string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.resume(ch)
	ws := b.waiters[ch]
	if len(ws) == 0 {
		// A resubscription after a reconnect: nobody is waiting for it.
		return
	}
	for _, ready := range ws[0] {
		close(ready)
	}
	if len(ws) == 1 {
		delete(b.waiters, ch)
	} else {
		b.waiters[ch] = ws[1:]
	}
}

func removeWaiter(ws []confirmation, w chan struct{}) []confirmation {
	for i, c := range ws {
		if len(c) == 1 && c[0] == w {
			return append(ws[:i:i], ws[i+1:]...)
		}
	}
	return ws
}
