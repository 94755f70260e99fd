package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"tidings/lib/auth"
	"tidings/lib/testenv"
)

// lpClient speaks the long-poll protocol as phoenix.js's LongPoll does.
type lpClient struct {
	t       *testing.T
	base    string // http://host/socket/longpoll?vsn=...&token=<user token>
	session string
}

// lpAnswerOf is a decoded long-poll answer with its HTTP status.
type lpAnswerOf struct {
	HTTP     int
	Status   int               `json:"status"`
	Token    string            `json:"token"`
	Messages []string          `json:"messages"`
	Error    map[string]string `json:"error"`
}

func (c *lpClient) url() string {
	if c.session == "" {
		return c.base
	}
	return c.base + "&token=" + url.QueryEscape(c.session)
}

func (c *lpClient) do(method, body, contentType string) lpAnswerOf {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url(), strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, c.url(), err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := lpAnswerOf{HTTP: resp.StatusCode}
	if err := json.Unmarshal(raw, &a); err != nil {
		c.t.Fatalf("%s answered %d %q: not JSON", method, resp.StatusCode, raw)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		c.t.Errorf("%s answer has Cache-Control %q, want no-store", method, resp.Header.Get("Cache-Control"))
	}
	return a
}

func (c *lpClient) get() lpAnswerOf { c.t.Helper(); return c.do(http.MethodGet, "", "") }

// post sends frames as one ndjson batch and expects 200.
func (c *lpClient) post(frames ...string) {
	c.t.Helper()
	if a := c.do(http.MethodPost, strings.Join(frames, "\n"), "application/x-ndjson"); a.HTTP != 200 || a.Status != 200 {
		c.t.Fatalf("POST %v: HTTP %d status %d %v, want 200", frames, a.HTTP, a.Status, a.Error)
	}
}

// connect starts a session: 410 with a token.
func (c *lpClient) connect() {
	c.t.Helper()
	a := c.get()
	if a.HTTP != 200 || a.Status != 410 || !strings.HasPrefix(a.Token, lpTokenPrefix) || a.Messages == nil {
		c.t.Fatalf("first GET: %+v, want HTTP 200 {status:410, token, messages:[]}", a)
	}
	c.session = a.Token
}

// expectMessages polls until messages arrived and compares them with want.
func (c *lpClient) expectMessages(want ...string) {
	c.t.Helper()
	var got []string
	for len(got) < len(want) {
		a := c.get()
		switch a.Status {
		case 200:
			if a.Token != c.session {
				c.t.Fatalf("poll answered token %q, want the session's", a.Token)
			}
			got = append(got, a.Messages...)
		case 204:
		default:
			c.t.Fatalf("poll: %+v, want 200 or 204", a)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		c.t.Fatalf("polled\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func newLP(t *testing.T, g *testGateway, vsn, userToken string) *lpClient {
	return &lpClient{t: t, base: fmt.Sprintf("http://%s/socket/longpoll?vsn=%s&token=%s", g.addr, vsn, url.QueryEscape(userToken))}
}

func lpConfig(t *testing.T) Config {
	cfg := testConfig(testenv.NewRedis(t), testenv.AdminURL())
	cfg.LongPollWindow = 300 * time.Millisecond
	return cfg
}

func TestLongPollSessionJoinsPushesAndReceives(t *testing.T) {
	g := startGateway(t, lpConfig(t))
	c := newLP(t, g, "2.0.0", token(t, 41))
	c.connect()
	// Nothing queued: the poll waits the window and answers 204.
	if a := c.get(); a.HTTP != 200 || a.Status != 204 || a.Token != c.session {
		t.Fatalf("empty poll: %+v, want 204 with the session token", a)
	}
	c.post(`["1","1","user:41","phx_join",{}]`, `[null,"2","phoenix","heartbeat",{}]`)
	c.expectMessages(`["1","1","user:41","phx_reply",{"status":"ok","response":{}}]`,
		`[null,"2","phoenix","phx_reply",{"status":"ok","response":{}}]`)
	if err := g.srv.Broadcast(context.Background(), "user:41", "notification", map[string]any{"id": 7}); err != nil {
		t.Fatal(err)
	}
	c.expectMessages(`[null,null,"user:41","notification",{"id":7}]`)
	// A binary push (base64 in the batch, as phoenix.js sends it) gets an
	// error reply; the session stays.
	bin := base64.StdEncoding.EncodeToString(binaryPushFrame("1", "3", "user:41", "publish", []byte{9, 9}))
	c.post(bin)
	c.expectMessages(fmt.Sprintf(`["1","3","user:41","phx_reply",{"status":"error","response":{"reason":%q}}]`, ReasonBinaryPayload))
	c.post(`[null,"4","phoenix","heartbeat",{}]`)
	c.expectMessages(`[null,"4","phoenix","phx_reply",{"status":"ok","response":{}}]`)
	// Refused joins are answered as over the WebSocket.
	c.post(`["5","5","user:42","phx_join",{}]`)
	c.expectMessages(`["5","5","user:42","phx_reply",{"status":"error","response":{"reason":"unauthorized"}}]`)
}

func TestLongPollSpeaksV1(t *testing.T) {
	g := startGateway(t, lpConfig(t))
	c := newLP(t, g, "1.0.0", token(t, 43))
	c.connect()
	c.post(`{"topic":"user:43","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}`)
	c.expectMessages(`{"topic":"user:43","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"1"}`)
	if err := g.srv.Broadcast(context.Background(), "user:43", "counter", map[string]int{"unread": 3}); err != nil {
		t.Fatal(err)
	}
	c.expectMessages(`{"topic":"user:43","event":"counter","payload":{"unread":3},"ref":null}`)
}

func TestLongPollRefusesBadTokensWith403(t *testing.T) {
	g := startGateway(t, lpConfig(t))
	expired, _, _ := auth.NewTokens(testSecret, -1).Issue(1)
	forged, _, _ := auth.NewTokens([]byte("another-secret-that-is-long-enough-too"), 3600e9).Issue(1)
	for name, c := range map[string]*lpClient{
		"missing token": {t: t, base: "http://" + g.addr + "/socket/longpoll?vsn=2.0.0"},
		"garbage token": newLP(t, g, "2.0.0", "not-a-jwt"),
		"expired token": newLP(t, g, "2.0.0", expired),
		"forged token":  newLP(t, g, "2.0.0", forged),
		"V3 serializer": newLP(t, g, "3.0.0", token(t, 1)),
	} {
		a := c.get()
		if a.HTTP != http.StatusForbidden || a.Status != http.StatusForbidden || a.Error["code"] == "" || a.Token != "" {
			t.Errorf("%s: %+v, want HTTP 403, status 403, an error code and no session", name, a)
		}
	}
	// The origin is checked on every request, as Phoenix does.
	req, _ := http.NewRequest(http.MethodGet, newLP(t, g, "2.0.0", token(t, 1)).url(), nil)
	req.Header.Set("Origin", "http://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign origin: HTTP %d, want 403", resp.StatusCode)
	}
	// phoenix.js's authToken option sends the token in a header.
	req, _ = http.NewRequest(http.MethodGet, "http://"+g.addr+"/socket/longpoll?vsn=2.0.0", nil)
	req.Header.Set("X-Phoenix-AuthToken", token(t, 44))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var a lpAnswerOf
	_ = json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	if a.Status != http.StatusGone || a.Token == "" {
		t.Errorf("X-Phoenix-AuthToken: %+v, want a session (410 with a token)", a)
	}
}

func TestLongPollAnswersBadInputWith4xxAndKeepsTheSession(t *testing.T) {
	cfg := lpConfig(t)
	cfg.MaxFrameBytes = 512
	g := startGateway(t, cfg)
	c := newLP(t, g, "2.0.0", token(t, 45))
	c.connect()
	c.post(`["1","1","user:45","phx_join",{}]`)
	c.expectMessages(`["1","1","user:45","phx_reply",{"status":"ok","response":{}}]`)
	heartbeat := `[null,"9","phoenix","heartbeat",{}]`
	for name, tc := range map[string]struct {
		body   string
		status int
	}{
		"not a frame":        {heartbeat + "\nhello world", http.StatusBadRequest},
		"not base64":         {"@@@", http.StatusBadRequest},
		"four elements":      {`[null,"1","phoenix","heartbeat"]`, http.StatusBadRequest},
		"an empty line":      {heartbeat + "\n\n" + heartbeat, http.StatusBadRequest},
		"a bad binary frame": {base64.StdEncoding.EncodeToString([]byte{1, 0, 0, 0, 0}), http.StatusBadRequest},
		"too many frames":    {strings.Repeat(heartbeat+"\n", lpMaxBatch) + heartbeat, http.StatusBadRequest},
		"a frame too large":  {`[null,"1","phoenix","heartbeat",{"pad":"` + strings.Repeat("x", 600) + `"}]`, http.StatusRequestEntityTooLarge},
	} {
		a := c.do(http.MethodPost, tc.body, "application/x-ndjson")
		if a.HTTP != tc.status || a.Status != tc.status || a.Error["code"] == "" {
			t.Errorf("%s: %+v, want HTTP and status %d with an error code", name, a, tc.status)
		}
	}
	// Nothing of a refused batch ran (its leading heartbeat included), and
	// the session and its join are still there.
	if err := g.srv.Broadcast(context.Background(), "user:45", "counter", map[string]int{"unread": 1}); err != nil {
		t.Fatal(err)
	}
	// The broadcast goes through Redis: it is awaited before the heartbeat,
	// whose reply would otherwise race it into the queue.
	c.expectMessages(`[null,null,"user:45","counter",{"unread":1}]`)
	c.post(`[null,"10","phoenix","heartbeat",{}]`)
	c.expectMessages(`[null,"10","phoenix","phx_reply",{"status":"ok","response":{}}]`)

	// A POST without a session, or with an unknown one, finds it gone.
	for name, session := range map[string]string{"none": "", "unknown": lpTokenPrefix + "bm8.c2VjcmV0", "malformed": lpTokenPrefix + "!!"} {
		other := &lpClient{t: t, base: c.base, session: session}
		if a := other.do(http.MethodPost, heartbeat, "application/x-ndjson"); a.HTTP != 200 || a.Status != http.StatusGone {
			t.Errorf("POST with session %s: %+v, want status 410", name, a)
		}
	}
	// Other methods get the router's 405 in the error shape.
	req, _ := http.NewRequest(http.MethodPut, c.url(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT: HTTP %d, want 405", resp.StatusCode)
	}
}

func TestLongPollSessionExpiresWhenIdle(t *testing.T) {
	cfg := lpConfig(t)
	cfg.LongPollIdle = 400 * time.Millisecond
	g := startGateway(t, cfg)
	c := newLP(t, g, "2.0.0", token(t, 46))
	c.connect()
	c.post(`["1","1","user:46","phx_join",{}]`)
	c.expectMessages(`["1","1","user:46","phx_reply",{"status":"ok","response":{}}]`)
	if g.srv.Connections() != 1 || g.srv.Topics() != 1 {
		t.Fatalf("after the join: %d connections, %d topics; want 1 and 1", g.srv.Connections(), g.srv.Topics())
	}
	// No poll: within the idle bound the session ends and leaves its topic.
	testenv.Eventually(t, "the idle session closed", 200, func() error {
		if n, m := g.srv.Connections(), g.srv.Topics(); n != 0 || m != 0 {
			return fmt.Errorf("%d connections, %d topics", n, m)
		}
		return nil
	})
	if a := c.get(); a.Status != http.StatusGone {
		t.Fatalf("poll of the expired session: %+v, want 410", a)
	}
	if a := c.do(http.MethodPost, `[null,"2","phoenix","heartbeat",{}]`, "application/x-ndjson"); a.Status != http.StatusGone {
		t.Fatalf("POST to the expired session: %+v, want 410", a)
	}
}

func TestLongPollSessionKeptAliveByPolls(t *testing.T) {
	cfg := lpConfig(t)
	cfg.LongPollWindow = 200 * time.Millisecond
	cfg.LongPollIdle = 300 * time.Millisecond
	g := startGateway(t, cfg)
	c := newLP(t, g, "2.0.0", token(t, 47))
	c.connect()
	// Polls one after the other, each longer than half the idle bound and
	// together far longer than it: the session lives through them.
	for range 6 {
		if a := c.get(); a.Status != http.StatusNoContent {
			t.Fatalf("poll: %+v, want 204", a)
		}
	}
	c.post(`[null,"1","phoenix","heartbeat",{}]`)
	c.expectMessages(`[null,"1","phoenix","phx_reply",{"status":"ok","response":{}}]`)
}

func TestLongPollSessionEndsAtTokenExpiry(t *testing.T) {
	g := startGateway(t, lpConfig(t))
	short, _, err := auth.NewTokens(testSecret, 1500*time.Millisecond).Issue(48)
	if err != nil {
		t.Fatal(err)
	}
	c := newLP(t, g, "2.0.0", short)
	c.connect()
	// Polls see the session until the token expires, then 410.
	testenv.Eventually(t, "the session gone at the token's expiry", 100, func() error {
		if a := c.get(); a.Status != http.StatusGone {
			return fmt.Errorf("poll answered %d", a.Status)
		}
		return nil
	})
}

// Two replicas behind one address: a session started on one is served
// through the other, which proxies to the owner found in the registry.
func TestLongPollSessionWorksThroughAnotherReplica(t *testing.T) {
	cfg := lpConfig(t)
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	testenv.Eventually(t, "both replicas registered", 100, func() error {
		nodes, err := b.srv.nodes.Nodes(context.Background())
		if err != nil || len(nodes) != 2 {
			return fmt.Errorf("nodes %v, err %v", nodes, err)
		}
		return nil
	})
	onA := newLP(t, a, "2.0.0", token(t, 49))
	onA.connect()
	viaB := &lpClient{t: t, base: newLP(t, b, "2.0.0", token(t, 49)).base, session: onA.session}
	viaB.post(`["1","1","user:49","phx_join",{}]`)
	viaB.expectMessages(`["1","1","user:49","phx_reply",{"status":"ok","response":{}}]`)
	if a.srv.Connections() != 1 || b.srv.Connections() != 0 {
		t.Fatalf("connections: %d on the owner, %d on the other; want 1 and 0", a.srv.Connections(), b.srv.Connections())
	}
	if err := b.srv.Broadcast(context.Background(), "user:49", "counter", map[string]int{"unread": 5}); err != nil {
		t.Fatal(err)
	}
	viaB.expectMessages(`[null,null,"user:49","counter",{"unread":5}]`)
	// The owner stops: its sessions are gone, wherever asked.
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if got := viaB.get(); got.Status != http.StatusGone {
		t.Fatalf("poll through the other replica after the owner stopped: %+v, want 410", got)
	}
}
