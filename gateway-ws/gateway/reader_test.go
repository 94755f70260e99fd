package gateway

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"tidings/lib/testenv"
)

// stackProbeEnv marks the child process TestIdleSocketsKeepTheSmallestReaderStack
// runs itself in.
const stackProbeEnv = "TIDINGS_READER_STACK_PROBE"

// TestIdleSocketsKeepTheSmallestReaderStack: sockets that joined a topic
// and answered a heartbeat, then went idle, each keep one goroutine whose
// stack is the runtime's smallest (2 KiB), not the 8 KiB a join grows. The
// test runs itself again with adaptive starting stacks off
// (GODEBUG=adaptivestackstart=0), so that every new goroutine starts at
// 2 KiB whatever this process ran before, and a stack over it can only
// have grown.
func TestIdleSocketsKeepTheSmallestReaderStack(t *testing.T) {
	if os.Getenv(stackProbeEnv) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleSocketsKeepTheSmallestReaderStack$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), stackProbeEnv+"=1", "GODEBUG="+strings.TrimPrefix(os.Getenv("GODEBUG")+",adaptivestackstart=0", ","))
		out, err := cmd.CombinedOutput()
		var report []string // the test's own lines, not the gateway's log
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "{") {
				report = append(report, line)
			}
		}
		if err != nil {
			t.Fatalf("the measuring process failed: %v\n%s", err, strings.Join(report, "\n"))
		}
		t.Log(strings.Join(report, "\n"))
		return
	}
	const sockets = 300
	db, cfg := newDBConfig(t)
	cfg.IdleTimeout = time.Hour // however slowly the sockets are opened, none times out
	g := startGateway(t, cfg)
	_, _, subs := testenv.Topic(t, db.Pool, sockets)
	clients := make([]*client, sockets)
	settled := func() (goroutines int, stack uint64) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.StackInuse
	}
	goroutines0, stack0 := settled()
	for i, user := range subs {
		// The clients run no goroutine: only the gateway's count.
		clients[i] = dial(t, g, user)
		clients[i].mustJoin(fmt.Sprintf("user:%d", user))
		clients[i].heartbeat()
	}
	var goroutines int
	var stack uint64
	testenv.Eventually(t, "each idle socket keeps one goroutine", 100, func() error {
		goroutines, stack = settled()
		// More means a second goroutine per socket (or goroutines of the
		// start still ending: waited out); fewer can only be those that
		// ended since the first count.
		if n := goroutines - goroutines0; n > sockets {
			return fmt.Errorf("%d more goroutines for %d idle sockets", n, sockets)
		}
		return nil
	})
	perSocket := float64(int64(stack)-int64(stack0)) / sockets / 1024
	t.Logf("stack per idle socket: %.2f KiB", perSocket)
	// 2 KiB each, and room for the runtime's stack caches; a reader grown
	// by a join keeps 8 KiB.
	if perSocket > 3 {
		t.Fatalf("idle sockets keep %.2f KiB of goroutine stack each, want at most 3 (the reader's 2 KiB)", perSocket)
	}
}

// TestFramesSentTogetherAreAllAnsweredInOrder: three frames that reach the
// gateway in one TCP write are all answered, in order: the reader waits in
// the socket's read buffer, not on the network, so frames already buffered
// are not left waiting for the client's next write.
func TestFramesSentTogetherAreAllAnsweredInOrder(t *testing.T) {
	db, cfg := newDBConfig(t)
	g := startGateway(t, cfg)
	user, _ := testenv.User(t, db.Pool, "batch@example.test")
	c := dial(t, g, user)
	var batch []byte
	for ref := 1; ref <= 3; ref++ {
		payload := fmt.Sprintf(`[null,"%d","phoenix","heartbeat",{}]`, ref)
		// A masked text frame with the zero mask: the payload as it is.
		batch = append(batch, 0x81, 0x80|byte(len(payload)), 0, 0, 0, 0)
		batch = append(batch, payload...)
	}
	if _, err := c.ws.NetConn().Write(batch); err != nil {
		t.Fatalf("write three frames at once: %v", err)
	}
	for ref := 1; ref <= 3; ref++ {
		c.expect(fmt.Sprintf(`[null,"%d","phoenix","phx_reply",{"status":"ok","response":{}}]`, ref))
	}
}

// panickyAccess is the directory, except that looking up a topic's owner
// panics: a bug in a join's handling.
type panickyAccess struct{ Access }

func (panickyAccess) TopicOwner(context.Context, int64) (int64, error) {
	panic("injected: topic owner lookup bug")
}

// TestPanicWhileHandlingAFrameClosesOnlyThatSocket: a join whose handling
// panics (off the reader goroutine) closes its socket with 1011; the
// gateway lives on, and another socket still gets its heartbeats answered.
func TestPanicWhileHandlingAFrameClosesOnlyThatSocket(t *testing.T) {
	db, cfg := newDBConfig(t)
	access := &panickyAccess{}
	cfg.Access = access
	g := startGateway(t, cfg)
	access.Access = g.srv.dir
	topicID, _, subs := testenv.Topic(t, db.Pool, 2)
	victim, bystander := dial(t, g, subs[0]), dial(t, g, subs[1])

	victim.send("1", "1", fmt.Sprintf("topic:%d", topicID), EventJoin, map[string]any{})
	ce := victim.expectClose(1)
	if ce.Code != websocket.CloseInternalServerErr {
		t.Fatalf("socket whose join panicked closed with %d %q, want %d", ce.Code, ce.Text, websocket.CloseInternalServerErr)
	}
	bystander.heartbeat()
}
