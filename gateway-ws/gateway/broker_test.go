package gateway

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/lib/testenv"
)

// blackhole forwards TCP connections to Redis until freeze: from then on,
// every connection open at that moment silently drops what it carries in
// both directions and is never closed (a half-open connection, as a network
// partition leaves it), while new connections work.
type blackhole struct {
	ln     net.Listener
	target string
	frozen atomic.Int64 // connections numbered below this are dead
	count  atomic.Int64
}

func newBlackhole(t *testing.T, target string) *blackhole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, target: target}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			n := b.count.Add(1)
			t.Cleanup(func() { _ = c.Close(); _ = up.Close() })
			go b.pipe(n, c, up)
			go b.pipe(n, up, c)
		}
	}()
	return b
}

func (b *blackhole) pipe(n int64, from, to net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		k, err := from.Read(buf)
		if err != nil {
			return
		}
		if n > b.frozen.Load() {
			if _, err := to.Write(buf[:k]); err != nil {
				return
			}
		}
	}
}

func (b *blackhole) freeze() { b.frozen.Store(b.count.Load()) }

// brokerBehindBlackhole is a broker on a Redis of the test's own, reached
// through a blackhole the test can freeze.
func brokerBehindBlackhole(t *testing.T, deliver func(topic string, frame []byte)) (*testenv.Redis, *blackhole, *Broker) {
	t.Helper()
	rds := testenv.NewRedis(t)
	if rds.Cluster {
		t.Skip("the blackhole fronts one server; a cluster is reached at many")
	}
	opts, err := redis.ParseURL(rds.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newBlackhole(t, opts.Addr)
	opts.Addr = proxy.ln.Addr().String()
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	b, err := NewBroker(context.Background(), rdb, rds.Prefix, slog.New(slog.NewTextHandler(io.Discard, nil)), deliver)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return rds, proxy, b
}

// TestBrokerReplacesAHalfOpenConnection: the fault is the broker's pub/sub
// connection going silent without closing, after a topic was subscribed.
// The health ping's missing answer must make the broker reconnect and
// resubscribe, so that frames published afterwards arrive again.
func TestBrokerReplacesAHalfOpenConnection(t *testing.T) {
	got := make(chan string, 100)
	rds, proxy, b := brokerBehindBlackhole(t, func(topic string, frame []byte) { got <- string(frame) })
	ready, err := b.Subscribe(context.Background(), "topic:1")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("subscription not confirmed")
	}

	proxy.freeze() // the fault
	deadline := time.Now().Add(4*BrokerHealthInterval + 5*time.Second)
	for time.Now().Before(deadline) {
		if err := rds.Client.Publish(context.Background(), b.channel("topic:1"), "after").Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case frame := <-got:
			if frame == "after" {
				return
			}
		case <-time.After(500 * time.Millisecond):
		}
	}
	t.Fatalf("no frame arrived within %v of the connection going silent: the broker kept the dead connection", 4*BrokerHealthInterval+5*time.Second)
}

// After the broker's connection went silent (the fault: every byte from
// Redis withheld), it reports each topic as resumed once Redis confirms
// the topic's subscription on the fresh connection: what the gateway's gap
// fill waits for. Before the fault, nothing is reported.
func TestBrokerReportsATopicResumedAfterItsConnectionDied(t *testing.T) {
	_, proxy, b := brokerBehindBlackhole(t, func(string, []byte) {})
	resumed := make(chan string, 10)
	b.SetResumed(func(topic string) { resumed <- topic })
	ready, err := b.Subscribe(context.Background(), "user:7")
	if err != nil {
		t.Fatal(err)
	}
	<-ready
	select {
	case topic := <-resumed:
		t.Fatalf("%s reported resumed before any fault", topic)
	default:
	}
	proxy.freeze()
	select {
	case topic := <-resumed:
		if topic != "user:7" {
			t.Errorf("resumed %q, want user:7", topic)
		}
	case <-time.After(4*BrokerHealthInterval + 5*time.Second):
		t.Fatal("the topic was never reported resumed after the connection died")
	}
}
