package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"tidings/lib/testenv"
)

// holdProxy forwards TCP connections to Redis. While held, the
// connections it accepts wait, unanswered, until release; cutSubscribers
// closes every connection that has sent a SUBSCRIBE (the broker's pub/sub
// connection).
type holdProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	hold  chan struct{} // non-nil while holding; closed by release
	held  int           // connections accepted while holding
	conns []*proxiedConn
}

type proxiedConn struct {
	client, up net.Conn
	subscriber bool // guarded by holdProxy.mu
}

func newHoldProxy(t *testing.T, target string) *holdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{ln: ln, target: target}
	t.Cleanup(func() {
		_ = ln.Close()
		p.release()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			_ = c.client.Close()
			if c.up != nil {
				_ = c.up.Close()
			}
		}
	})
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			hold := p.hold
			if hold != nil {
				p.held++
			}
			c := &proxiedConn{client: client}
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			go p.forward(c, hold)
		}
	}()
	return p
}

func (p *holdProxy) forward(c *proxiedConn, hold chan struct{}) {
	if hold != nil {
		<-hold
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.client.Close()
		return
	}
	p.mu.Lock()
	c.up = up
	p.mu.Unlock()
	go func() { _, _ = io.Copy(c.client, up) }()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.client.Read(buf)
		if n > 0 {
			if bytes.Contains(bytes.ToLower(buf[:n]), []byte("subscribe")) {
				p.mu.Lock()
				c.subscriber = true
				p.mu.Unlock()
			}
			if _, werr := up.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = up.Close()
			return
		}
	}
}

func (p *holdProxy) holdNew() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold == nil {
		p.hold = make(chan struct{})
	}
}

func (p *holdProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold != nil {
		close(p.hold)
		p.hold = nil
	}
}

func (p *holdProxy) heldCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

func (p *holdProxy) cutSubscribers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	cut := 0
	for _, c := range p.conns {
		if c.subscriber && c.up != nil {
			_ = c.client.Close()
			_ = c.up.Close()
			cut++
		}
	}
	return cut
}

// TestJoinsOfSubscribedTopicsProceedWhileAnotherTopicsSubscribeIsHeld:
// the broker's pub/sub connection is cut and its redial held, so the
// SUBSCRIBE of a new topic cannot go out; joins and leaves of a topic
// already subscribed do not wait for it (the hub holds no lock of its own
// across the broker's call), and once Redis is back both topics receive.
func TestJoinsOfSubscribedTopicsProceedWhileAnotherTopicsSubscribeIsHeld(t *testing.T) {
	rds := testenv.NewRedis(t)
	if rds.Cluster {
		t.Skip("the proxy fronts one server; a cluster is reached at many")
	}
	opts, err := redis.ParseURL(rds.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newHoldProxy(t, opts.Addr)
	u, err := url.Parse(rds.URL)
	if err != nil {
		t.Fatal(err)
	}
	// Long timeouts: a held redial must stay held until the test releases
	// it, not fail on its own and let a blocked hub go. Idle connections
	// dialed beforehand serve the other commands (a join's user lookup)
	// while new ones are held.
	u.Host, u.RawQuery = proxy.ln.Addr().String(), "dial_timeout=60s&read_timeout=60s&write_timeout=60s&min_idle_conns=4"
	cfg := testConfig(rds, testenv.AdminURL())
	cfg.RedisURL = u.String()
	g := startGateway(t, cfg)

	const subscribed, held = "user:31", "user:32"
	first := dial(t, g, 31)
	first.mustJoin(subscribed)

	proxy.holdNew()
	if n := proxy.cutSubscribers(); n == 0 {
		t.Fatal("no pub/sub connection to cut")
	}
	testenv.Eventually(t, "the broker redials into the hold", 500, func() bool { return proxy.heldCount() > 0 })
	waiting := dial(t, g, 32)
	waiting.send("1", "1", held, EventJoin, map[string]any{})
	testenv.Eventually(t, "the held topic's join reaches the hub", 500, func() bool { return g.srv.Topics() == 2 })

	// Meanwhile: a second socket joins and leaves the subscribed topic,
	// answered at once.
	second := dial(t, g, 31)
	jr := second.mustJoin(subscribed)
	second.send(jr, "9", subscribed, EventLeave, map[string]any{})
	second.expect(fmt.Sprintf(`[%q,"9",%q,"phx_reply",{"status":"ok","response":{}}]`, jr, subscribed))
	second.expect(fmt.Sprintf(`[%q,%q,%q,"phx_close",{}]`, jr, jr, subscribed))
	first.heartbeat()

	proxy.release()
	waiting.expect(fmt.Sprintf(`["1","1",%q,"phx_reply",{"status":"ok","response":{}}]`, held))
	for _, c := range []struct {
		topic string
		to    *client
	}{{subscribed, first}, {held, waiting}} {
		if err := g.srv.Broadcast(context.Background(), c.topic, "counter", map[string]int{"unread": 1}); err != nil {
			t.Fatal(err)
		}
		c.to.expect(fmt.Sprintf(`[null,null,%q,"counter",{"unread":1}]`, c.topic))
	}
}

// TestConcurrentJoinsAndLeavesOfATopicEndSubscribedIffItHasMembers: joins
// and leaves of one topic race (a leave's UNSUBSCRIBE against a join's
// SUBSCRIBE); whatever their order, the topic ends subscribed exactly
// while it has members.
func TestConcurrentJoinsAndLeavesOfATopicEndSubscribedIffItHasMembers(t *testing.T) {
	rds := testenv.NewRedis(t)
	g := startGateway(t, testConfig(rds, testenv.AdminURL()))
	const topic = "user:41"
	redisChannel := g.srv.broker.channel(topic)
	numsub := func() int64 { return subscribersOf(t, rds.Client, redisChannel) }
	hub := g.srv.hub
	for round := range 20 {
		var wg sync.WaitGroup
		var stay []*channel
		for i := range 8 {
			ch := &channel{topic: topic}
			if i%2 == 1 {
				stay = append(stay, ch)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := hub.Join(context.Background(), ch); err != nil {
					t.Errorf("round %d: join: %v", round, err)
					return
				}
				if i%2 == 0 {
					hub.Leave(ch)
				}
			}()
		}
		wg.Wait()
		// Every join waited for its own SUBSCRIBE's confirmation or for a
		// subscription no UNSUBSCRIBE has followed.
		if n := numsub(); n != 1 {
			t.Fatalf("round %d: %d members and %d Redis subscribers, want 1", round, len(stay), n)
		}
		for _, ch := range stay {
			wg.Add(1)
			go func() { defer wg.Done(); hub.Leave(ch) }()
		}
		wg.Wait()
		if hub.Topics() != 0 {
			t.Fatalf("round %d: the hub still holds %d topics after every leave", round, hub.Topics())
		}
		testenv.Eventually(t, "the last UNSUBSCRIBE is applied", 200, func() bool { return numsub() == 0 })
	}
}
