package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"tidings/gateway-ws/invoke"
	"time"

	"github.com/gorilla/websocket"

	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/testenv"
)

var (
	testSecret      = []byte("gateway-test-secret-of-at-least-32-bytes")
	testInternalKey = "gateway-test-internal-key"
	testTokens      = auth.NewTokens(testSecret, time.Hour)
)

// testConfig is a gateway on loopback with the test's own Redis prefix and
// database; limits are the production defaults unless a test changes them.
func testConfig(rds *testenv.Redis, databaseURL string) Config {
	return Config{
		Config: config.Config{
			DatabaseURL:  databaseURL,
			RedisURL:     rds.URL,
			RedisPrefix:  rds.Prefix,
			MaxBodyBytes: 64 << 10,
			JWTSecret:    testSecret,
			InternalKey:  testInternalKey,
		},
		Addr:            "127.0.0.1:0",
		FaaSURL:         "http://127.0.0.1:1",
		MaxFrameBytes:   64 << 10,
		SendQueue:       256,
		IdleTimeout:     time.Minute,
		WriteTimeout:    10 * time.Second,
		InboundRate:     1000,
		InboundBurst:    1000,
		JoinTimeout:     5 * time.Second,
		PublishTimeout:  5 * time.Second,
		ShutdownTimeout: 5 * time.Second,
		Calls:           invoke.Config{Default: invoke.Settings{Timeout: 5 * time.Second, MaxInflight: 64, BreakerFailures: 5, BreakerOpenFor: time.Second}},
		Logger:          slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// newDBConfig is testConfig over a database and Redis prefix of the test's
// own; it returns the database too, to seed.
func newDBConfig(t *testing.T) (*testenv.DB, Config) {
	t.Helper()
	db := testenv.NewDB(t)
	return db, testConfig(testenv.NewRedis(t), db.URL)
}

// joinOwnTopic seeds a topic with no subscribers, connects its owner to g
// and joins the topic: it returns the topic's id, the owner's, the topic's
// name, the owner's connection and the join ref.
func joinOwnTopic(t *testing.T, g *testGateway, db *testenv.DB) (topicID, ownerID int64, topic string, owner *client, jr string) {
	t.Helper()
	topicID, ownerID, _ = testenv.Topic(t, db.Pool, 0)
	topic = fmt.Sprintf("topic:%d", topicID)
	owner = dial(t, g, ownerID)
	return topicID, ownerID, topic, owner, owner.mustJoin(topic)
}

// testGateway is one running replica.
type testGateway struct {
	srv  *Server
	addr string // host:port
	stop func() error
}

func startGateway(t testing.TB, cfg Config) *testGateway {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("start gateway: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	stopped := false
	g := &testGateway{srv: srv, addr: ln.Addr().String()}
	g.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-served
	}
	t.Cleanup(func() { _ = g.stop() })
	return g
}

func (g *testGateway) socketURL(token string) string {
	return fmt.Sprintf("ws://%s/socket/websocket?vsn=2.0.0&token=%s", g.addr, token)
}

func (g *testGateway) httpURL(path string) string { return "http://" + g.addr + path }

func token(t *testing.T, userID int64) string {
	t.Helper()
	tok, _, err := testTokens.Issue(userID)
	if err != nil {
		t.Fatalf("issue token: %v", err)
	}
	return tok
}

// client is a raw Phoenix V2 client, so tests see every frame as sent.
type client struct {
	t   *testing.T
	ws  *websocket.Conn
	ref int
	// presence: read returns presence_state and presence_diff frames too;
	// by default it skips them, for tests about other frames of a topic.
	presence bool
}

func dial(t *testing.T, g *testGateway, userID int64) *client {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(g.socketURL(token(t, userID)), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial gateway as user %d: %v (HTTP %d)", userID, err, status)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return &client{t: t, ws: ws}
}

func (c *client) nextRef() string {
	c.ref++
	return fmt.Sprint(c.ref)
}

func (c *client) sendRaw(frame string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		c.t.Fatalf("send %s: %v", frame, err)
	}
}

// send writes a frame; a nil joinRef is sent as null.
func (c *client) send(joinRef any, ref, topic, event string, payload any) {
	c.t.Helper()
	b, err := json.Marshal([]any{joinRef, ref, topic, event, payload})
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(b))
}

// read returns the next frame as its raw text and decoded message.
func (c *client) read() (string, Message) {
	c.t.Helper()
	for {
		raw, m := c.readAny()
		if c.presence || (m.Event != EventPresenceState && m.Event != EventPresenceDiff) {
			return raw, m
		}
	}
}

func (c *client) readAny() (string, Message) {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, data, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	if typ != websocket.TextMessage {
		c.t.Fatalf("read frame of type %d, want text", typ)
	}
	m, err := Decode(data)
	if err != nil {
		c.t.Fatalf("gateway sent an undecodable frame %s: %v", data, err)
	}
	return string(data), m
}

// expect reads the next frame and compares it with want exactly.
func (c *client) expect(want string) {
	c.t.Helper()
	got, _ := c.read()
	if got != want {
		c.t.Fatalf("got frame\n  %s\nwant\n  %s", got, want)
	}
}

// join joins topic and returns the reply frame.
func (c *client) join(topic string) string {
	c.t.Helper()
	ref := c.nextRef()
	c.send(ref, ref, topic, EventJoin, map[string]any{})
	got, _ := c.read()
	return got
}

func (c *client) mustJoin(topic string) string {
	c.t.Helper()
	ref := fmt.Sprint(c.ref + 1)
	got := c.join(topic)
	want := fmt.Sprintf(`[%q,%q,%q,"phx_reply",{"status":"ok","response":{}}]`, ref, ref, topic)
	if got != want {
		c.t.Fatalf("join %s: got %s, want %s", topic, got, want)
	}
	return ref
}

// heartbeat sends a heartbeat and expects its ok reply next.
func (c *client) heartbeat() {
	c.t.Helper()
	ref := c.nextRef()
	c.send(nil, ref, TopicPhoenix, EventHeartbeat, map[string]any{})
	c.expect(fmt.Sprintf(`[null,%q,"phoenix","phx_reply",{"status":"ok","response":{}}]`, ref))
}

// expectClose reads until the gateway closes the socket and returns the
// close frame it sent; frames before it are skipped, at most max of them.
func (c *client) expectClose(max int) *websocket.CloseError {
	c.t.Helper()
	for range max {
		_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err := c.ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce
		}
		c.t.Fatalf("socket ended without a close frame: %v", err)
	}
	c.t.Fatalf("socket still open after %d frames", max)
	return nil
}

// postJSON posts body to url with headers and returns status and body.
func postJSON(t *testing.T, url, body string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, sb.String()
}
