package gateway

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"

	"tidings/lib/redisx"
)

// Broker fans frames out across gateway replicas through Redis pub/sub.
// A Redis channel is subscribed only while some local connection has
// joined its topic, so Redis sees one subscriber per replica per topic,
// never one per connection.
//
// The subscriptions ride on lanes (broker_lane.go), each one pub/sub
// connection with its channels, checked by a health ping and replaced when
// it dies. On one Redis server one lane carries every channel (SUBSCRIBE).
// On a Redis Cluster pub/sub is sharded (SSUBSCRIBE, lib/redisx), and one
// SSUBSCRIBE may only name channels of one slot, while go-redis
// resubscribes all of a connection's channels in one command after a
// reconnect: so every channel of a lane must share one slot. Topics are
// therefore spread over brokerPartitions partitions, each with its hash tag
// in its channels' names and a lane of its own, and a watched raw channel
// (Watch) gets a lane of its own too.
type Broker struct {
	rdb     redis.UniversalClient
	prefix  string // every topic's channel starts with it
	sharded bool   // rdb is a cluster: one lane per partition
	log     *slog.Logger

	deliver func(topic string, frame []byte)
	// resumed is told of each topic whose subscription Redis confirmed
	// again after the connection failed (SetResumed); nil: nobody.
	resumed func(topic string)

	// lanes carry the topics: lanes[partition(topic)].
	lanes []*lane

	mu sync.Mutex
	// watchers are the raw Redis channels heard for the broker's whole
	// life (Watch), outside the topics' prefix, with what each calls.
	watchers map[string]func(payload string)
	// watched are the lanes of the watched channels on a cluster.
	watched []*lane

	closed atomic.Bool
}

// brokerPartitions is how many partitions, and so pub/sub connections,
// carry the topics of a replica on a cluster. Fixed, so that every replica
// names a topic's channel alike; enough to spread the topics over the
// masters of a usual cluster, few enough that a replica's connections stay
// a handful per master.
const brokerPartitions = 16

// BrokerHealthInterval is how long a pub/sub connection may stay quiet
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

// brokerControl is subscribed on each topic lane for the broker's whole
// life: it opens the lane's connection at start, so a Redis that is down
// fails NewBroker at once.
const brokerControl = "_control"

// NewBroker subscribes on rdb and calls deliver for every frame published
// on a topic this replica has subscribed. deliver must not block.
func NewBroker(ctx context.Context, rdb redis.UniversalClient, prefix string, log *slog.Logger, deliver func(topic string, frame []byte)) (*Broker, error) {
	b := &Broker{
		rdb:      rdb,
		prefix:   prefix + "ws:",
		sharded:  redisx.Sharded(rdb),
		log:      log,
		deliver:  deliver,
		watchers: map[string]func(string){},
	}
	partitions := 1
	if b.sharded {
		partitions = brokerPartitions
	}
	for p := range partitions {
		l := newLane(b, b.lanePrefix(p))
		if err := l.open(ctx, b.lanePrefix(p)+brokerControl, true); err != nil {
			_ = b.Close()
			return nil, err
		}
		b.lanes = append(b.lanes, l)
	}
	return b, nil
}

// channel is the Redis channel of topic: on a cluster it carries the hash
// tag of the topic's partition, e.g. "<prefix>ws:{p7}:user:42".
func (b *Broker) channel(topic string) string { return b.lanePrefix(b.partition(topic)) + topic }

// lanePrefix starts the channels of partition p's topics.
func (b *Broker) lanePrefix(p int) string {
	if !b.sharded {
		return b.prefix
	}
	return fmt.Sprintf("%s{p%d}:", b.prefix, p)
}

// partition is the partition of topic: always 0 on one server.
func (b *Broker) partition(topic string) int {
	if !b.sharded {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(topic))
	return int(h.Sum32() % brokerPartitions)
}

// Subscribe starts receiving topic and returns a channel that is closed
// once Redis has confirmed the subscription: only then is a frame
// published afterwards on any replica sure to arrive here.
func (b *Broker) Subscribe(ctx context.Context, topic string) (<-chan struct{}, error) {
	return b.lanes[b.partition(topic)].subscribe(ctx, b.channel(topic))
}

// Watch calls hear with the payload of every message published on the
// Redis channel named (whole: not a topic under the broker's prefix) from
// now on, for the broker's life; a reconnect subscribes it again. On one
// server it rides on the topics' connection; on a cluster it gets a lane
// of its own, where any name works, and its publishers must use
// redisx.Publish. hear must not block. Messages lost while the connection
// is down are lost: a watcher must not depend on every one.
func (b *Broker) Watch(ctx context.Context, channel string, hear func(payload string)) error {
	b.mu.Lock()
	b.watchers[channel] = hear
	b.mu.Unlock()
	if !b.sharded {
		return b.lanes[0].add(ctx, channel)
	}
	// Not waited for: a lane whose Redis is unreachable keeps trying, and
	// the watcher hears from the moment it manages.
	l := newLane(b, "")
	if err := l.open(ctx, channel, false); err != nil {
		return err
	}
	// Listed once open, for Close to close; a broker closed meanwhile
	// (its replica shutting down while starting) will not, so it is
	// closed here.
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return l.close()
	}
	b.watched = append(b.watched, l)
	b.mu.Unlock()
	return nil
}

func (b *Broker) watcher(channel string) func(string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.watchers[channel]
}

// Unsubscribe stops receiving topic.
func (b *Broker) Unsubscribe(ctx context.Context, topic string) error {
	return b.lanes[b.partition(topic)].unsubscribe(ctx, b.channel(topic))
}

// Publish sends frame to every replica that has subscribers on topic.
func (b *Broker) Publish(ctx context.Context, topic string, frame []byte) error {
	if err := redisx.Publish(ctx, b.rdb, b.channel(topic), frame).Err(); err != nil {
		return fmt.Errorf("publish on %s: %w", b.channel(topic), err)
	}
	return nil
}

// Close ends every subscription connection.
func (b *Broker) Close() error {
	b.closed.Store(true)
	b.mu.Lock()
	lanes := append(append([]*lane(nil), b.lanes...), b.watched...)
	b.mu.Unlock()
	var first error
	for _, l := range lanes {
		if err := l.close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
