package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"tidings/lib/testenv"
)

func TestHeartbeatOnPhoenixGetsOkReply(t *testing.T) {
	g := startGateway(t, testConfig(testenv.NewRedis(t), testenv.AdminURL()))
	c := dial(t, g, 1)
	c.heartbeat()
	// A join_ref on a heartbeat is not echoed: Phoenix replies with nil.
	c.sendRaw(`["9","10","phoenix","heartbeat",{}]`)
	c.expect(`[null,"10","phoenix","phx_reply",{"status":"ok","response":{}}]`)
}

func TestJoinUserChannelOnlyForThatUser(t *testing.T) {
	g := startGateway(t, testConfig(testenv.NewRedis(t), testenv.AdminURL()))
	c := dial(t, g, 7)
	c.mustJoin("user:7")
	if got, want := c.join("user:8"), `["2","2","user:8","phx_reply",{"status":"error","response":{"reason":"unauthorized"}}]`; got != want {
		t.Fatalf("joining another user's channel: got %s, want %s", got, want)
	}
	if got, want := c.join("user:07"), `["3","3","user:07","phx_reply",{"status":"error","response":{"reason":"invalid topic"}}]`; got != want {
		t.Fatalf("joining a malformed user channel: got %s, want %s", got, want)
	}
	c.heartbeat() // refused joins leave the socket usable
}

func TestJoinTopicChannelForOwnerAndSubscribersOnly(t *testing.T) {
	db, cfg := newDBConfig(t)
	g := startGateway(t, cfg)
	topicID, ownerID, subs := testenv.Topic(t, db.Pool, 1)
	_, _, others := testenv.Topic(t, db.Pool, 1) // a user who subscribes elsewhere
	topic := fmt.Sprintf("topic:%d", topicID)

	dial(t, g, ownerID).mustJoin(topic)
	dial(t, g, subs[0]).mustJoin(topic)
	stranger := dial(t, g, others[0])
	want := fmt.Sprintf(`["1","1",%q,"phx_reply",{"status":"error","response":{"reason":"unauthorized"}}]`, topic)
	if got := stranger.join(topic); got != want {
		t.Fatalf("stranger joining %s: got %s, want %s", topic, got, want)
	}
	missing := fmt.Sprintf("topic:%d", topicID+1000)
	want = fmt.Sprintf(`["2","2",%q,"phx_reply",{"status":"error","response":{"reason":"unauthorized"}}]`, missing)
	if got := stranger.join(missing); got != want {
		t.Fatalf("joining a missing topic: got %s, want %s", got, want)
	}
}

func TestBadMessagesGetPhoenixAnswersAndSocketSurvives(t *testing.T) {
	g := startGateway(t, testConfig(testenv.NewRedis(t), testenv.AdminURL()))
	c := dial(t, g, 3)
	cases := []struct {
		name, frame, want string
	}{
		{"join of an unknown topic", `["1","1","room:lobby","phx_join",{}]`,
			`[null,"1","room:lobby","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`},
		{"push on a topic not joined", `["1","2","user:3","hello",{}]`,
			`[null,"2","user:3","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`},
		{"leave of a topic not joined", `["1","3","user:3","phx_leave",{}]`,
			`["1","3","user:3","phx_reply",{"status":"ok","response":{}}]`},
		{"unknown event on the phoenix topic", `[null,"4","phoenix","hello",{}]`,
			`[null,"4","phoenix","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`},
		{"extra elements are ignored", `[null,"5","phoenix","heartbeat",{},"x",1]`,
			`[null,"5","phoenix","phx_reply",{"status":"ok","response":{}}]`},
		{"numeric refs are echoed", `[null,6,"phoenix","heartbeat",{}]`,
			`[null,6,"phoenix","phx_reply",{"status":"ok","response":{}}]`},
	}
	for _, tc := range cases {
		c.sendRaw(tc.frame)
		if got, _ := c.read(); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
	jr := c.mustJoin("user:3")
	c.send(jr, "20", "user:3", "dance", map[string]any{})
	c.expect(fmt.Sprintf(`[%q,"20","user:3","phx_reply",{"status":"error","response":{"reason":"unknown event"}}]`, jr))
	// A message for an earlier join of a joined topic is not for this channel.
	c.send("old", "21", "user:3", "dance", map[string]any{})
	c.expect(`[null,"21","user:3","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`)
	c.send(nil, "22", "user:3", "dance", map[string]any{})
	c.expect(`[null,"22","user:3","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`)
	c.heartbeat()
}

func TestUndecodableFramesCloseTheSocket(t *testing.T) {
	cfg := testConfig(testenv.NewRedis(t), testenv.AdminURL())
	cfg.MaxFrameBytes = 1024
	g := startGateway(t, cfg)
	cases := []struct {
		name string
		typ  int
		body string
		code int
	}{
		{"not JSON", websocket.TextMessage, `hello`, websocket.CloseInvalidFramePayloadData},
		{"JSON object", websocket.TextMessage, `{"topic":"phoenix"}`, websocket.CloseInvalidFramePayloadData},
		{"four elements", websocket.TextMessage, `[null,"1","phoenix","heartbeat"]`, websocket.CloseInvalidFramePayloadData},
		{"topic not a string", websocket.TextMessage, `[null,"1",1,"heartbeat",{}]`, websocket.CloseInvalidFramePayloadData},
		// V2 binary frames must be pushes (kind 0) whose fields fit.
		{"short binary frame", websocket.BinaryMessage, "\x00\x01\x02", websocket.CloseInvalidFramePayloadData},
		{"binary reply kind", websocket.BinaryMessage, "\x01\x00\x00\x00\x00", websocket.CloseInvalidFramePayloadData},
		{"binary fields past the end", websocket.BinaryMessage, "\x00\x01\x01\x07\x09ab", websocket.CloseInvalidFramePayloadData},
		{"oversized frame", websocket.TextMessage, `[null,"1","phoenix","heartbeat",{"pad":"` + strings.Repeat("x", 2048) + `"}]`, websocket.CloseMessageTooBig},
	}
	for _, tc := range cases {
		c := dial(t, g, 4)
		if err := c.ws.WriteMessage(tc.typ, []byte(tc.body)); err != nil {
			t.Fatalf("%s: send: %v", tc.name, err)
		}
		if ce := c.expectClose(5); ce.Code != tc.code {
			t.Errorf("%s: closed with %d %q, want code %d", tc.name, ce.Code, ce.Text, tc.code)
		}
	}
	// The gateway is still there for everyone else.
	dial(t, g, 4).heartbeat()
}

func TestLeaveRepliesClosesAndStopsDelivery(t *testing.T) {
	g := startGateway(t, testConfig(testenv.NewRedis(t), testenv.AdminURL()))
	leaver, stayer := dial(t, g, 5), dial(t, g, 5)
	jr := leaver.mustJoin("user:5")
	stayer.mustJoin("user:5")

	leaver.send(jr, "9", "user:5", EventLeave, map[string]any{})
	leaver.expect(fmt.Sprintf(`[%q,"9","user:5","phx_reply",{"status":"ok","response":{}}]`, jr))
	leaver.expect(fmt.Sprintf(`[%q,%q,"user:5","phx_close",{}]`, jr, jr))

	if err := g.srv.Broadcast(context.Background(), "user:5", "counter", map[string]int{"unread": 1}); err != nil {
		t.Fatal(err)
	}
	stayer.expect(`[null,null,"user:5","counter",{"unread":1}]`)
	// The hub hands a frame to all members at once, so had the leaver still
	// been one, the broadcast would now come before this heartbeat's reply.
	leaver.heartbeat()
}

func TestSecondJoinClosesTheFirst(t *testing.T) {
	g := startGateway(t, testConfig(testenv.NewRedis(t), testenv.AdminURL()))
	c := dial(t, g, 6)
	first := c.mustJoin("user:6")
	c.send("7", "7", "user:6", EventJoin, map[string]any{})
	c.expect(fmt.Sprintf(`[%q,%q,"user:6","phx_close",{}]`, first, first))
	c.expect(`["7","7","user:6","phx_reply",{"status":"ok","response":{}}]`)
	// One membership, so one copy of a broadcast.
	if err := g.srv.Broadcast(context.Background(), "user:6", "counter", map[string]int{"unread": 2}); err != nil {
		t.Fatal(err)
	}
	c.expect(`[null,null,"user:6","counter",{"unread":2}]`)
	c.heartbeat()
}

func TestInboundRateLimitAnswersErrors(t *testing.T) {
	cfg := testConfig(testenv.NewRedis(t), testenv.AdminURL())
	cfg.InboundBurst = 3
	cfg.InboundRate = 0.001 // no refill within the test
	g := startGateway(t, cfg)
	c := dial(t, g, 1)
	for i := range 6 {
		c.send(nil, fmt.Sprint(i), TopicPhoenix, EventHeartbeat, map[string]any{})
	}
	// Three within the burst, then one "rate limited" reply for the rest
	// of this second: the frames after it are dropped and counted.
	for i := range 4 {
		status := StatusOK
		resp := `{}`
		if i >= 3 {
			status, resp = StatusError, `{"reason":"rate_limited","retry_after":1000}`
		}
		c.expect(fmt.Sprintf(`[null,"%d","phoenix","phx_reply",{"status":%q,"response":%s}]`, i, status, resp))
	}
	waitDropped(t, g, 2)
}

func TestIdleSocketIsClosedAndHeartbeatsKeepItOpen(t *testing.T) {
	cfg := testConfig(testenv.NewRedis(t), testenv.AdminURL())
	cfg.IdleTimeout = 300 * time.Millisecond
	g := startGateway(t, cfg)

	alive := dial(t, g, 1)
	idle := dial(t, g, 2)
	// Heartbeats for three idle timeouts; each one gets its reply.
	for range 9 {
		alive.heartbeat()
		time.Sleep(cfg.IdleTimeout / 3)
	}
	alive.heartbeat()
	if ce := idle.expectClose(1); ce.Code != websocket.CloseNormalClosure || ce.Text != "idle timeout" {
		t.Fatalf("idle socket closed with %d %q, want 1000 \"idle timeout\"", ce.Code, ce.Text)
	}
}

func TestClientThatNeverReadsIsClosedWithBoundedMemory(t *testing.T) {
	cfg := testConfig(testenv.NewRedis(t), testenv.AdminURL())
	cfg.SendQueue = 16
	cfg.WriteTimeout = 2 * time.Second
	g := startGateway(t, cfg)
	// A small receive buffer keeps the kernel from soaking up tens of
	// megabytes on the client's behalf before the gateway notices.
	dialer := websocket.Dialer{NetDialContext: (&net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}).DialContext}
	ws, _, err := dialer.Dial(g.socketURL(token(t, 9)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	c := &client{t: t, ws: ws}
	c.mustJoin("user:9")
	// From here on the client reads nothing.

	payload := map[string]string{"body": strings.Repeat("x", 16<<10)}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var peak uint64
	const maxFrames = 4000 // 64 MiB if nothing ever stopped the writes
	sent := 0
	for ; sent < maxFrames && g.srv.Connections() > 0; sent++ {
		if err := g.srv.Broadcast(context.Background(), "user:9", "notification", payload); err != nil {
			t.Fatal(err)
		}
		if sent%50 == 0 {
			var m runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapAlloc)
		}
	}
	// Delivery runs behind publishing (through Redis); give the gateway a
	// bounded while to act on the frames already sent.
	for i := 0; i < 500 && g.srv.Connections() != 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if g.srv.Connections() != 0 {
		t.Fatalf("a client that never reads is still connected after %d frames of 16 KiB", sent)
	}
	growth := int64(peak) - int64(before.HeapAlloc)
	const bound = 8 << 20 // the queue holds 16 frames of 16 KiB; the rest is slack
	if growth > bound {
		t.Fatalf("live heap grew by %d bytes while writing to a stuck client, want at most %d", growth, bound)
	}
	t.Logf("closed after %d frames (%d KiB); peak live heap growth %d KiB", sent, sent*16, growth>>10)
}

func TestTopicJoinWithDatabaseDownRepliesUnavailable(t *testing.T) {
	// Fault: PostgreSQL does not answer (nothing listens on the port) for
	// the whole test. Must hold: topic joins get an error reply, user
	// channels and the socket keep working.
	g := startGateway(t, testConfig(testenv.NewRedis(t), "postgres://postgres@127.0.0.1:1/tidings?sslmode=disable&connect_timeout=2"))
	c := dial(t, g, 1)
	if got, want := c.join("topic:1"), `["1","1","topic:1","phx_reply",{"status":"error","response":{"reason":"unavailable"}}]`; got != want {
		t.Fatalf("topic join with the database down: got %s, want %s", got, want)
	}
	c.mustJoin("user:1")
	c.heartbeat()
}

func TestWebSocketPingsCountAsActivity(t *testing.T) {
	cfg := testConfig(testenv.NewRedis(t), testenv.AdminURL())
	cfg.IdleTimeout = 300 * time.Millisecond
	g := startGateway(t, cfg)
	c := dial(t, g, 1)
	// Only protocol-level pings for three idle timeouts, no heartbeats.
	for range 9 {
		if err := c.ws.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(time.Second)); err != nil {
			t.Fatalf("ping: %v", err)
		}
		time.Sleep(cfg.IdleTimeout / 3)
	}
	c.heartbeat() // the pongs are skipped by the client; the socket is still open
}
