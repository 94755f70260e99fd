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

	"github.com/redis/go-redis/v9"
)

// Broker fans frames out across gateway replicas through Redis pub/sub.
// One Redis connection carries every subscription of this replica, and a
// Redis channel is subscribed only while some local connection has joined
// its topic, so Redis sees one subscriber per replica per topic, never one
// per connection.
type Broker struct {
	rdb    *redis.Client
	ps     *redis.PubSub
	prefix string // every channel starts with it
	log    *slog.Logger

	deliver func(topic string, frame []byte)

	mu sync.Mutex
	// waiters are closed when Redis confirms a SUBSCRIBE, oldest first:
	// Redis answers commands on a connection in order, so the n-th
	// confirmation for a channel belongs to the n-th SUBSCRIBE sent for it.
	waiters map[string][]chan struct{}

	closed atomic.Bool
	done   chan struct{}
}

// brokerControl is subscribed for the broker's whole life: it opens the
// pub/sub connection at start, so a Redis that is down fails New at once.
const brokerControl = "_control"

// NewBroker subscribes on rdb and calls deliver for every frame published
// on a topic this replica has subscribed. deliver must not block.
func NewBroker(ctx context.Context, rdb *redis.Client, prefix string, log *slog.Logger, deliver func(topic string, frame []byte)) (*Broker, error) {
	b := &Broker{
		rdb:     rdb,
		prefix:  prefix + "ws:",
		log:     log,
		deliver: deliver,
		waiters: map[string][]chan struct{}{},
		done:    make(chan struct{}),
	}
	b.ps = rdb.Subscribe(ctx, b.channel(brokerControl))
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
	b.mu.Lock()
	b.waiters[ch] = append(b.waiters[ch], ready)
	b.mu.Unlock()
	if err := b.ps.Subscribe(ctx, ch); err != nil {
		b.mu.Lock()
		b.waiters[ch] = removeWaiter(b.waiters[ch], ready)
		b.mu.Unlock()
		return nil, fmt.Errorf("subscribe %s: %w", ch, err)
	}
	return ready, nil
}

// Unsubscribe stops receiving topic.
func (b *Broker) Unsubscribe(ctx context.Context, topic string) error {
	if err := b.ps.Unsubscribe(ctx, b.channel(topic)); err != nil {
		return fmt.Errorf("unsubscribe %s: %w", b.channel(topic), err)
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
	err := b.ps.Close()
	<-b.done
	return err
}

// run reads the pub/sub connection until it is closed. go-redis reconnects
// and resubscribes every channel by itself after a network error; the loop
// only has to keep reading and keep the connection checked with pings.
func (b *Broker) run() {
	defer close(b.done)
	ctx := context.Background()
	backoff := 50 * time.Millisecond
	for {
		msg, err := b.ps.ReceiveTimeout(ctx, 30*time.Second)
		if err != nil {
			if b.closed.Load() || errors.Is(err, redis.ErrClosed) {
				return
			}
			var netErr net.Error
			if errors.As(err, &netErr) && netErr.Timeout() {
				pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_ = b.ps.Ping(pingCtx)
				cancel()
				continue
			}
			b.log.Warn("redis pub/sub receive failed; retrying", "err", err, "backoff", backoff)
			time.Sleep(backoff)
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Message:
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

func (b *Broker) confirm(ch string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ws := b.waiters[ch]
	if len(ws) == 0 {
		// A resubscription after a reconnect: nobody is waiting for it.
		return
	}
	close(ws[0])
	if len(ws) == 1 {
		delete(b.waiters, ch)
	} else {
		b.waiters[ch] = ws[1:]
	}
}

func removeWaiter(ws []chan struct{}, w chan struct{}) []chan struct{} {
	for i, x := range ws {
		if x == w {
			return append(ws[:i:i], ws[i+1:]...)
		}
	}
	return ws
}
