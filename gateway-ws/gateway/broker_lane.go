package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/lib/redisx"
)

// lane is one pub/sub connection of the broker with the channels it
// carries (all of one slot on a cluster).
//
// The connection is checked: when it has been quiet for
// BrokerHealthInterval a PING goes out, and when its PONG (or anything
// else) has not come back within another BrokerHealthInterval the
// connection is taken as dead (a network partition leaves it half-open,
// and TCP would take minutes to tell) and replaced by a fresh one
// subscribed to every channel again.
type lane struct {
	b *Broker
	// prefix starts the channels of the lane's topics; "" on the lane of
	// a watched channel, which carries no topic.
	prefix string

	// psMu guards ps: the reader replaces it when the connection is dead,
	// while subscribe and unsubscribe may be using it.
	psMu sync.RWMutex
	ps   *redis.PubSub

	mu sync.Mutex
	// channels are the subscribed channels, for a fresh connection.
	channels map[string]struct{}
	// waiters are the joins waiting for Redis to confirm a SUBSCRIBE, one
	// entry per SUBSCRIBE sent, oldest first: Redis answers commands on a
	// connection in order, so the n-th confirmation for a channel belongs
	// to the n-th SUBSCRIBE sent for it.
	waiters map[string][]confirmation
	// leaving counts the UNSUBSCRIBEs sent per channel and not yet
	// confirmed, the same way: an unsubscription Redis sends of its own
	// (a cluster's slot moved away from the node) is one beyond them.
	leaving map[string]int
	// stale are the channels subscribed while the connection failed:
	// frames published on them may have been lost until Redis confirms
	// them again.
	stale map[string]struct{}

	done chan struct{}
}

// confirmation is what one SUBSCRIBE's confirmation releases: the joins
// waiting for it (more than one after a reconnect merged them).
type confirmation []chan struct{}

func newLane(b *Broker, prefix string) *lane {
	return &lane{
		b: b, prefix: prefix,
		channels: map[string]struct{}{},
		waiters:  map[string][]confirmation{},
		leaving:  map[string]int{},
		stale:    map[string]struct{}{},
		done:     make(chan struct{}),
	}
}

// open subscribes the lane's first channel and starts reading it. With
// wait it first takes the first answer on the fresh connection: the
// subscription's confirmation, or the reason Redis is unreachable.
func (l *lane) open(ctx context.Context, first string, wait bool) error {
	l.channels[first] = struct{}{}
	l.ps = redisx.Subscribe(ctx, l.b.rdb, first)
	if wait {
		if _, err := l.ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
			_ = l.ps.Close()
			return fmt.Errorf("subscribe to Redis: %w", err)
		}
	}
	go l.run()
	return nil
}

// subscribe adds ch and returns a channel closed once Redis confirmed it.
func (l *lane) subscribe(ctx context.Context, ch string) (<-chan struct{}, error) {
	ready := make(chan struct{})
	l.psMu.RLock()
	defer l.psMu.RUnlock()
	l.mu.Lock()
	l.channels[ch] = struct{}{}
	l.waiters[ch] = append(l.waiters[ch], confirmation{ready})
	l.mu.Unlock()
	if err := redisx.AddChannels(ctx, l.b.rdb, l.ps, ch); err != nil {
		l.mu.Lock()
		l.waiters[ch] = removeWaiter(l.waiters[ch], ready)
		l.mu.Unlock()
		return nil, fmt.Errorf("subscribe %s: %w", ch, err)
	}
	return ready, nil
}

// add adds ch without waiting for its confirmation.
func (l *lane) add(ctx context.Context, ch string) error {
	l.psMu.RLock()
	defer l.psMu.RUnlock()
	l.mu.Lock()
	l.channels[ch] = struct{}{}
	l.mu.Unlock()
	if err := redisx.AddChannels(ctx, l.b.rdb, l.ps, ch); err != nil {
		return fmt.Errorf("subscribe %s: %w", ch, err)
	}
	return nil
}

func (l *lane) unsubscribe(ctx context.Context, ch string) error {
	l.psMu.RLock()
	defer l.psMu.RUnlock()
	l.mu.Lock()
	delete(l.channels, ch)
	delete(l.stale, ch)
	l.leaving[ch]++
	l.mu.Unlock()
	if err := redisx.RemoveChannels(ctx, l.b.rdb, l.ps, ch); err != nil {
		// Perhaps never sent: better a needless reconnect, should its
		// confirmation come, than a real loss taken for it.
		l.mu.Lock()
		l.left(ch)
		l.mu.Unlock()
		return fmt.Errorf("unsubscribe %s: %w", ch, err)
	}
	return nil
}

// close ends the lane's connection and waits for its reader.
func (l *lane) close() error {
	l.psMu.RLock()
	err := l.ps.Close()
	l.psMu.RUnlock()
	<-l.done
	return err
}

func (l *lane) pubsub() *redis.PubSub {
	l.psMu.RLock()
	defer l.psMu.RUnlock()
	return l.ps
}

// run reads the lane's connection until it is closed. On one server
// go-redis reconnects and resubscribes every channel by itself after an
// error it sees. On a cluster its own redial of a sharded connection goes
// to any node, and the node it knew as the slot's master may have been
// replaced by a failover or a moved slot: so the lane has the client learn
// the cluster's layout again and replaces the connection by one subscribed
// at the slot's master (trying again, spaced out, while that fails). A
// connection that just goes silent is found by the health ping.
func (l *lane) run() {
	defer close(l.done)
	ctx := context.Background()
	waits := brokerBackOff()
	pinged := false // a PING is out and nothing has come back since
	for {
		ps := l.pubsub()
		msg, err := ps.ReceiveTimeout(ctx, BrokerHealthInterval)
		if err != nil {
			if l.b.closed.Load() {
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
				l.b.log.Warn("redis pub/sub connection does not answer; reconnecting", "err", err)
				l.lost()
				l.reconnect(ctx)
				pinged = false
				continue
			}
			if errors.Is(err, redis.ErrClosed) && ps != l.pubsub() {
				continue // replaced by a reconnect meanwhile
			}
			pinged = false
			l.lost()
			redisx.Relearn(ctx, l.b.rdb)
			wait := waits.NextBackOff()
			l.b.log.Warn("redis pub/sub receive failed; retrying", "err", err, "backoff", wait)
			time.Sleep(wait)
			if l.b.sharded {
				l.reconnect(ctx)
			}
			continue
		}
		pinged = false
		waits.Reset()
		switch m := msg.(type) {
		case *redis.Message:
			if hear := l.b.watcher(m.Channel); hear != nil {
				hear(m.Payload)
				continue
			}
			topic, ok := strings.CutPrefix(m.Channel, l.prefix)
			if ok && l.prefix != "" && topic != brokerControl {
				l.b.deliver(topic, []byte(m.Payload))
			}
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				l.confirm(m.Channel)
			case "unsubscribe", "sunsubscribe":
				if l.dropped(m.Channel) {
					// Redis 7 unsubscribes a slot's shard channels when
					// the slot moves to another node: subscribe them
					// again where the slot is now.
					l.b.log.Warn("redis dropped a subscription (slot moved); resubscribing", "channel", m.Channel)
					l.lost()
					redisx.Relearn(ctx, l.b.rdb)
					l.reconnect(ctx)
				}
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

// reconnect replaces the connection by a fresh one subscribed to every
// channel. The SUBSCRIBEs still unconfirmed on the old connection are
// answered by the new connection's one SUBSCRIBE of their channel.
func (l *lane) reconnect(ctx context.Context) {
	l.psMu.Lock()
	defer l.psMu.Unlock()
	_ = l.ps.Close()
	l.mu.Lock()
	channels := make([]string, 0, len(l.channels))
	for ch := range l.channels {
		channels = append(channels, ch)
	}
	for ch, ws := range l.waiters {
		if _, ok := l.channels[ch]; !ok {
			delete(l.waiters, ch) // unsubscribed since: never confirmed
			continue
		}
		var merged confirmation
		for _, w := range ws {
			merged = append(merged, w...)
		}
		l.waiters[ch] = []confirmation{merged}
	}
	l.mu.Unlock()
	// If Redis is still unreachable the new PubSub keeps the channels and
	// subscribes them when the next receive manages to connect.
	dialCtx, cancel := context.WithTimeout(ctx, 2*BrokerHealthInterval)
	defer cancel()
	l.ps = redisx.Subscribe(dialCtx, l.b.rdb, channels...)
}

func (l *lane) confirm(ch string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.resume(ch)
	ws := l.waiters[ch]
	if len(ws) == 0 {
		// A resubscription after a reconnect: nobody is waiting for it.
		return
	}
	for _, ready := range ws[0] {
		close(ready)
	}
	if len(ws) == 1 {
		delete(l.waiters, ch)
	} else {
		l.waiters[ch] = ws[1:]
	}
}

// dropped takes an unsubscription of ch from Redis and reports whether
// the lane still wants ch: then Redis dropped it of its own accord.
func (l *lane) dropped(ch string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.leaving[ch] > 0 {
		l.left(ch)
		return false
	}
	_, wanted := l.channels[ch]
	return wanted
}

// left counts one UNSUBSCRIBE of ch answered; l.mu is held.
func (l *lane) left(ch string) {
	if l.leaving[ch]--; l.leaving[ch] <= 0 {
		delete(l.leaving, ch)
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
