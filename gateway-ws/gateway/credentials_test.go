package gateway

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"tidings/functions"
	"tidings/infra/fnhost"
	"tidings/lib/cache"
	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/logging"
	"tidings/lib/testenv"
)

// credentialStack is every function, served as a FaaS gateway would in a
// process of its own (with its own near cache on the test's Redis
// prefix), behind two gateway replicas.
type credentialStack struct {
	db   *testenv.DB
	a, b *testGateway
}

func startCredentialStack(t *testing.T) credentialStack {
	t.Helper()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	quiet := logging.NewTo(io.Discard, "error", "test")
	c, err := cache.New(cache.Config{Store: cache.Near, Prefix: rd.Prefix, Logger: quiet}, rd.Client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	deps := &functions.Deps{
		Config: config.Config{RedisPrefix: rd.Prefix, InternalKey: testInternalKey, JWTSecret: testSecret,
			Limits: config.DefaultLimits(), MaxBodyBytes: 64 << 10, AuthCheckGrace: time.Second},
		DBs: db.DBs(), Redis: rd.Client, Tokens: testTokens, Cache: c,
	}
	fns, err := fnhost.Load("../../stack.yml", deps)
	if err != nil {
		t.Fatal(err)
	}
	host := httptest.NewServer(fnhost.New(fns, 64<<10, quiet))
	t.Cleanup(host.Close)
	cfg := testConfig(rd, db.URL)
	cfg.FaaSURL = host.URL
	return credentialStack{db: db, a: startGateway(t, cfg), b: startGateway(t, cfg)}
}

// request calls url with method, the Bearer credential (none when empty)
// and body (for POST), and answers the status and body.
func request(t *testing.T, method, url, bearer, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if method == http.MethodPost {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// fn calls a function through g's pass-through with its catalogue method.
func (g *testGateway) fn(t *testing.T, name, bearer, body string) (int, string) {
	t.Helper()
	f, ok := catalog.Lookup(name)
	if !ok {
		t.Fatalf("no function %s", name)
	}
	return request(t, f.Method, g.httpURL("/function/"+name), bearer, body)
}

func (g *testGateway) publish(t *testing.T, topicID int64, bearer string) (int, string) {
	t.Helper()
	return request(t, http.MethodPost, g.httpURL(fmt.Sprintf("/api/topics/%d/notifications", topicID)), bearer, `{"title":"from the backend"}`)
}

// dialToken opens a socket with a token; it fails the test if refused.
func dialToken(t *testing.T, g *testGateway, tok string) *client {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(g.socketURL(tok), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return &client{t: t, ws: ws}
}
