package coordinator

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/lib/notification"
	"tidings/lib/testenv"
)

// decisionWrite is how the decision (preparing -> committing) looks on the
// wire: the transition script's first two arguments.
var decisionWrite = []byte("$9\r\npreparing\r\n$10\r\ncommitting\r\n")

// redisProxy is a TCP proxy in front of Redis that can lose the decision
// write's reply, or hold the write itself while cutting Redis off, as a
// network partition starting at the decision would.
type redisProxy struct {
	t      *testing.T
	ln     net.Listener
	target string

	mu sync.Mutex
	// onDecision is what happens to the next decision write; "" lets it through.
	onDecision string
	cut        bool          // partitioned: nothing passes either way
	held       []byte        // the decision write held back by the partition
	heldTo     net.Conn      // the Redis connection it was sent on
	healed     chan struct{} // closed when the partition heals
}

// The faults a redisProxy injects at the decision write.
const (
	loseReply = "lose-reply" // the write reaches Redis, its reply never comes back
	partition = "partition"  // the write and everything after it is held until heal
)

func startRedisProxy(t *testing.T, target string) *redisProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &redisProxy{t: t, ln: ln, target: target, healed: make(chan struct{})}
	t.Cleanup(func() { _ = ln.Close() })
	go p.serve()
	return p
}

func (p *redisProxy) addr() string { return p.ln.Addr().String() }

func (p *redisProxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
		go p.pipe(client, server)
	}
}

// pipe forwards one client connection, applying the armed fault.
func (p *redisProxy) pipe(client, server net.Conn) {
	var mu sync.Mutex
	replies := true // whether this connection still gets its replies
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := server.Read(buf)
			if err != nil {
				_ = client.Close()
				return
			}
			mu.Lock()
			pass := replies && !p.isCut()
			mu.Unlock()
			if pass {
				if _, err := client.Write(buf[:n]); err != nil {
					return
				}
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := client.Read(buf)
		if err != nil {
			// The held write still reaches Redis at the heal, after the
			// client gave up on it, as a retransmission would.
			p.mu.Lock()
			holding := p.heldTo == server
			p.mu.Unlock()
			if !holding {
				_ = server.Close()
			}
			return
		}
		chunk := append([]byte(nil), buf[:n]...)
		p.mu.Lock()
		fault := ""
		if bytes.Contains(chunk, decisionWrite) {
			fault, p.onDecision = p.onDecision, ""
		}
		switch {
		case fault == loseReply:
			mu.Lock()
			replies = false
			mu.Unlock()
		case fault == partition:
			p.cut, p.held, p.heldTo = true, chunk, server
			p.mu.Unlock()
			continue
		case p.cut:
			p.mu.Unlock()
			continue // dropped
		}
		p.mu.Unlock()
		if _, err := server.Write(chunk); err != nil {
			return
		}
	}
}

func (p *redisProxy) isCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

func (p *redisProxy) arm(fault string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onDecision = fault
}

// heal ends the partition; the held decision write lands first, when
// deliver is set, or is lost.
func (p *redisProxy) heal(deliver bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if deliver && p.heldTo != nil {
		if _, err := p.heldTo.Write(p.held); err != nil {
			p.t.Errorf("deliver the held decision write: %v", err)
		}
		// Its reply has no one to go to; give Redis a moment to run it
		// before other traffic passes, as TCP would deliver it first.
		time.Sleep(50 * time.Millisecond)
	}
	if p.heldTo != nil {
		_ = p.heldTo.Close()
	}
	p.cut, p.held, p.heldTo = false, nil, nil
}

// ambiguousHarness is a harness whose coordinator reaches Redis through a
// redisProxy, with short record timeouts.
func ambiguousHarness(t *testing.T) (*harness, *redisProxy) {
	srv := testenv.StartRedisServer(t)
	proxy := startRedisProxy(t, srv.Addr())
	client := redis.NewClient(&redis.Options{Addr: proxy.addr(), MaxRetries: -1, ReadTimeout: 2 * time.Second})
	t.Cleanup(func() { _ = client.Close() })
	h := newHarnessOn(t, &testenv.Redis{Client: client, Prefix: "tidings-test:", URL: "redis://" + proxy.addr()}, nil, nil)
	h.settings.RecordTimeout = 200 * time.Millisecond
	h.settings.RecoveryInterval = 100 * time.Millisecond
	h.coord = h.newCoordinator(nil)
	// The checks read Redis directly, not through the proxy.
	h.rd = &testenv.Redis{Client: srv.Client(), Prefix: "tidings-test:", URL: srv.URL()}
	// As after any earlier transaction: the decision goes out as EVALSHA
	// and runs, rather than coming back NOSCRIPT.
	if err := transitionScript.Load(context.Background(), h.rd.Client).Err(); err != nil {
		t.Fatal(err)
	}
	return h, proxy
}

func TestDecisionWriteWhoseReplyIsLostIsHonoured(t *testing.T) {
	h, proxy := ambiguousHarness(t)
	owner, topic, _ := h.world()
	// Fault: the decision reaches Redis; its reply is lost, so the
	// coordinator times out not knowing whether it landed.
	proxy.arm(loseReply)
	res, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "decided, unheard"})
	if err != nil || res.Pending || res.NotificationID == 0 {
		t.Fatalf("publish whose decision's reply was lost: %+v %v, want committed (the decision landed)", res, err)
	}
	h.committedOnce(res.TxID)
}

func TestPartitionAtTheDecisionWriteNeverLeavesARecordUnfinished(t *testing.T) {
	for _, c := range []struct {
		name      string
		lands     bool // the held decision write reaches Redis at the heal
		committed bool
	}{
		{"decision lands after the heal", true, true},
		{"decision lost in the partition", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, proxy := ambiguousHarness(t)
			owner, topic, _ := h.world()
			// Fault: Redis is cut off at the decision write, which is held
			// in the network; nothing can tell the coordinator whether it
			// landed.
			proxy.arm(partition)
			_, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "partitioned"})
			var pending *PendingError
			if !errors.As(err, &pending) {
				t.Fatalf("publish cut off at the decision: %v, want PendingError (neither commit nor rollback is safe)", err)
			}
			if n := h.barriers(`SELECT count(*) FROM tx_barriers WHERE state = 'rolled_back'`); n != 0 {
				t.Fatalf("%d participants rolled back while the decision was unknown", n)
			}
			proxy.heal(c.lands)
			h.recoverUntilSettled(h.coord)
			want := 0
			if c.committed {
				want = 1
			}
			if n := h.count(h.dbs.Persist, `SELECT count(*) FROM notifications WHERE state = 'committed'`); n != want {
				t.Errorf("%d committed notifications, want %d", n, want)
			}
			wantState := Aborted
			if c.committed {
				wantState = Committed
			}
			if s := h.txState(pending.TxID); s != wantState {
				t.Errorf("record %q, want %s", s, wantState)
			}
		})
	}
}
