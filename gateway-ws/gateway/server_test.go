package gateway

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"tidings/lib/auth"
	"tidings/lib/testenv"
)

// dialStatus dials url and returns the HTTP status of the handshake.
func dialStatus(t *testing.T, url string, header http.Header) int {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err == nil {
		ws.Close()
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	return resp.StatusCode
}

func TestSocketRefusesBadTokensWith403(t *testing.T) {
	g := startGateway(t, testConfig(testenv.NewRedis(t), testenv.AdminURL()))
	expired, _, _ := auth.NewTokens(testSecret, -1).Issue(1)
	forged, _, _ := auth.NewTokens([]byte("another-secret-that-is-long-enough-too"), 3600e9).Issue(1)
	for name, url := range map[string]string{
		"missing token": "ws://" + g.addr + "/socket/websocket?vsn=2.0.0",
		"garbage token": g.socketURL("not-a-jwt"),
		"expired token": g.socketURL(expired),
		"forged token":  g.socketURL(forged),
		"V3 serializer": "ws://" + g.addr + "/socket/websocket?vsn=3.0.0&token=" + token(t, 1),
	} {
		if got := dialStatus(t, url, nil); got != http.StatusForbidden {
			t.Errorf("%s: handshake status %d, want 403", name, got)
		}
	}
}

func TestSocketTakesTokenFromPhoenixAuthSubprotocol(t *testing.T) {
	g := startGateway(t, testConfig(testenv.NewRedis(t), testenv.AdminURL()))
	// phoenix.js's authToken option: btoa(token) without padding.
	proto := authTokenPrefix + base64.RawStdEncoding.EncodeToString([]byte(token(t, 21)))
	dialer := websocket.Dialer{Subprotocols: []string{"phoenix", proto}}
	ws, _, err := dialer.Dial("ws://"+g.addr+"/socket/websocket?vsn=2.0.0", nil)
	if err != nil {
		t.Fatalf("dial with auth subprotocol: %v", err)
	}
	defer ws.Close()
	if ws.Subprotocol() != "phoenix" {
		t.Fatalf("negotiated subprotocol %q, want phoenix", ws.Subprotocol())
	}
	c := &client{t: t, ws: ws}
	c.mustJoin("user:21")
}

func TestOriginCheck(t *testing.T) {
	rds := testenv.NewRedis(t)
	sameHost := startGateway(t, testConfig(rds, testenv.AdminURL()))
	cfg := testConfig(rds, testenv.AdminURL())
	cfg.AllowedOrigins = []string{"https://app.example"}
	listed := startGateway(t, cfg)
	url := func(g *testGateway) string { return g.socketURL(token(t, 1)) }
	cases := []struct {
		name   string
		g      *testGateway
		origin string
		want   int
	}{
		{"no Origin (not a browser)", sameHost, "", http.StatusSwitchingProtocols},
		{"own host", sameHost, "http://" + sameHost.addr, http.StatusSwitchingProtocols},
		{"foreign host", sameHost, "http://evil.example", http.StatusForbidden},
		{"listed origin", listed, "https://app.example", http.StatusSwitchingProtocols},
		{"unlisted origin", listed, "https://evil.example", http.StatusForbidden},
	}
	for _, tc := range cases {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		if got := dialStatus(t, url(tc.g), h); got != tc.want {
			t.Errorf("%s: handshake status %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestShutdownClosesSocketsWithGoingAway(t *testing.T) {
	g := startGateway(t, testConfig(testenv.NewRedis(t), testenv.AdminURL()))
	c := dial(t, g, 1)
	c.mustJoin("user:1")
	stopped := make(chan error, 1)
	go func() { stopped <- g.stop() }()
	ce := c.expectClose(5)
	if ce.Code != websocket.CloseGoingAway {
		t.Fatalf("shutdown closed the socket with %d %q, want 1001 (going away), which makes clients reconnect", ce.Code, ce.Text)
	}
	_ = c.ws.Close() // answer nothing more; the server must not wait on us
	if err := <-stopped; err != nil {
		t.Fatalf("Serve after shutdown: %v", err)
	}
}

func TestInternalBroadcastNeedsTheKeyAndAValidBody(t *testing.T) {
	g := startGateway(t, testConfig(testenv.NewRedis(t), testenv.AdminURL()))
	url := g.httpURL("/internal/broadcast")
	good := `{"topic":"user:1","event":"counter","payload":{"unread":1}}`
	key := http.Header{auth.InternalKeyHeader: {testInternalKey}}
	cases := []struct {
		name   string
		body   string
		header http.Header
		want   int
	}{
		{"no key", good, nil, http.StatusUnauthorized},
		{"wrong key", good, http.Header{auth.InternalKeyHeader: {"nope"}}, http.StatusUnauthorized},
		{"not JSON", `{`, key, http.StatusBadRequest},
		{"unroutable topic", `{"topic":"room:1","event":"x","payload":{}}`, key, http.StatusBadRequest},
		{"reserved event", `{"topic":"user:1","event":"phx_close","payload":{}}`, key, http.StatusBadRequest},
		{"payload not an object", `{"topic":"user:1","event":"x","payload":[1]}`, key, http.StatusBadRequest},
		{"good", good, key, http.StatusAccepted},
	}
	for _, tc := range cases {
		if got, body := postJSON(t, url, tc.body, tc.header); got != tc.want {
			t.Errorf("%s: status %d (%s), want %d", tc.name, got, body, tc.want)
		}
	}
}

func TestNewFailsWithoutRedis(t *testing.T) {
	cfg := testConfig(testenv.NewRedis(t), testenv.AdminURL())
	cfg.RedisURL = "redis://127.0.0.1:1/0"
	if _, err := New(context.Background(), cfg); err == nil {
		t.Fatal("New with an unreachable Redis succeeded, want an error")
	}
	cfg = testConfig(testenv.NewRedis(t), testenv.AdminURL())
	cfg.SendQueue = 0
	if _, err := New(context.Background(), cfg); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("New with WS_SEND_QUEUE=0: %v, want a configuration error", err)
	}
}

// FuzzSocketFrame sends arbitrary text frames over a live socket: whatever
// comes in, the gateway either answers and stays usable (a heartbeat sent
// afterwards is answered) or closes the socket with a close frame whose
// code says why; it never drops the connection without one or dies.
func FuzzSocketFrame(f *testing.F) {
	for _, seed := range []string{
		`[null,"1","phoenix","heartbeat",{}]`,
		`["1","1","user:1","phx_join",{}]`,
		`["1","1","user:2","phx_join",{}]`,
		`["1","1","room:x","phx_join",{}]`,
		`["1","2","user:1","phx_leave",{}]`,
		`["1","2","user:1","publish",{"title":"t"}]`,
		`[null,null,"topic:1","phx_join",null]`,
		`not json`, `[1,2,3]`, `[]`, `{}`, `[null,null,null,null,null]`,
	} {
		f.Add(seed)
	}
	g := startGateway(f, testConfig(testenv.NewRedis(f), testenv.AdminURL()))
	tok, _, err := testTokens.Issue(1)
	if err != nil {
		f.Fatal(err)
	}
	allowedCloses := map[int]bool{
		websocket.CloseInvalidFramePayloadData: true,
		websocket.CloseMessageTooBig:           true,
	}
	f.Fuzz(func(t *testing.T, frame string) {
		ws, _, err := websocket.DefaultDialer.Dial(g.socketURL(tok), nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer ws.Close()
		if err := ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			t.Fatalf("send: %v", err)
		}
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`[null,"fuzz-probe","phoenix","heartbeat",{}]`))
		for range 20 {
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, data, err := ws.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				if !allowedCloses[ce.Code] {
					t.Fatalf("frame %q: closed with %d %q", frame, ce.Code, ce.Text)
				}
				return
			}
			if err != nil {
				t.Fatalf("frame %q: connection dropped without a close frame: %v", frame, err)
			}
			if _, err := Decode(data); err != nil {
				t.Fatalf("frame %q: gateway sent an undecodable frame %q", frame, data)
			}
			if strings.Contains(string(data), `"fuzz-probe"`) {
				return
			}
		}
		t.Fatalf("frame %q: no answer to the probe heartbeat within 20 frames", frame)
	})
}

func TestBadSettingsAreAllNamedInTheSameOrderEveryRun(t *testing.T) {
	want := "gateway: FUNCTION_TIMEOUT, MAX_BODY_BYTES, PUBLISH_TIMEOUT, SHUTDOWN_TIMEOUT, WS_IDLE_TIMEOUT, " +
		"WS_INBOUND_BURST, WS_INBOUND_RATE, WS_JOIN_TIMEOUT, WS_MAX_FRAME_BYTES, WS_SEND_QUEUE, WS_WRITE_TIMEOUT must be positive"
	for range 20 { // a map's order changes from one range to the next
		var cfg Config
		cfg.JWTSecret, cfg.RedisPrefix = []byte("secret"), "t:"
		if err := validate(&cfg); err == nil || err.Error() != want {
			t.Fatalf("validate: %v\nwant: %s", err, want)
		}
	}
}
