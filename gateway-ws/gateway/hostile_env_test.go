package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"tidings/functions"
	"tidings/infra/fnhost"
	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/logging"
	"tidings/lib/testenv"
)

// hostileEnv is the whole system on loopback: every function on the
// function host (infra/fnhost) as stack.yml declares it, and a gateway
// passing the public ones through, over one test database and Redis prefix.
type hostileEnv struct {
	t       *testing.T
	db      *testenv.DB
	rd      *testenv.Redis
	host    *httptest.Server
	gw      *testGateway
	owner   int64 // owns topic
	topic   int64
	ownerTk string
}

func startHostileEnv(t *testing.T) *hostileEnv {
	t.Helper()
	db := testenv.NewDB(t)
	rd := testenv.NewRedis(t)
	limits := config.DefaultLimits()
	deps := &functions.Deps{
		Config: config.Config{RedisPrefix: rd.Prefix, InternalKey: testInternalKey, JWTSecret: testSecret, Limits: limits, MaxBodyBytes: 64 << 10},
		DBs:    db.DBs(), Redis: rd.Client, Tokens: auth.NewTokens(testSecret, time.Hour),
	}
	fns, err := fnhost.Load("../../stack.yml", deps)
	if err != nil {
		t.Fatal(err)
	}
	host := httptest.NewUnstartedServer(fnhost.New(fns, 64<<10, logging.NewTo(io.Discard, "error", "test")))
	host.Listener = fn.JSONErrorListener(host.Listener)
	host.Config.MaxHeaderBytes = 16 << 10
	host.Start()
	t.Cleanup(host.Close)
	cfg := testConfig(rd, db.URL)
	cfg.FaaSURL = host.URL
	cfg.Calls.FaaSURL = host.URL
	e := &hostileEnv{t: t, db: db, rd: rd, host: host, gw: startGateway(t, cfg)}
	e.topic, e.owner, _ = testenv.Topic(t, db.Pool, 1)
	e.ownerTk = token(t, e.owner)
	return e
}

// snapshot is every row of the database and every Redis key of the test's
// prefix.
func (e *hostileEnv) snapshot() string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := testenv.Keys(ctx, e.rd.Client, e.rd.Prefix+"*")
	if err != nil {
		e.t.Fatalf("redis keys: %v", err)
	}
	return testenv.Snapshot(e.t, e.db.Pool) + "== redis\n" + strings.Join(keys, "\n")
}

// hostileCase is one request a hostile client makes.
type hostileCase struct {
	name   string
	base   string // "fnhost" or "gateway"
	method string
	path   string // with the query string
	header http.Header
	body   string
	raw    string // when set, written as is instead
	// status, when set, is the one status expected instead of any 4xx:
	// net/http answers an unknown transfer coding 501, as RFC 9112 asks.
	status int
}

type answer struct {
	status      int
	contentType string
	body        []byte
}

func (e *hostileEnv) addr(base string) string {
	if base == "fnhost" {
		return strings.TrimPrefix(e.host.URL, "http://")
	}
	return e.gw.addr
}

func (e *hostileEnv) do(c hostileCase) answer {
	e.t.Helper()
	if c.raw != "" {
		return rawRequest(e.t, e.addr(c.base), c.raw)
	}
	req, err := http.NewRequest(c.method, "http://"+e.addr(c.base)+c.path, strings.NewReader(c.body))
	if err != nil {
		e.t.Fatalf("%s: %v", c.name, err)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		e.t.Fatalf("%s: %s %s: %v", c.name, c.method, c.path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), body}
}

// rawRequest writes request on a fresh connection and reads one answer.
func rawRequest(t *testing.T, addr, request string) answer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() { _, _ = io.WriteString(c, request) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer to a raw request: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), body}
}

// errorShape returns the answer's error code when it is a 4xx in the JSON
// error shape, or why it is not.
func errorShape(a answer, want int) (string, bool) {
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if want != 0 && a.status != want {
		return fmt.Sprintf("status %d, want %d", a.status, want), false
	}
	if want == 0 && (a.status < 400 || a.status > 499) {
		return fmt.Sprintf("status %d is not a 4xx", a.status), false
	}
	if !strings.HasPrefix(a.contentType, "application/json") {
		return fmt.Sprintf("Content-Type %q", a.contentType), false
	}
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == nil || e.Error.Code == "" || e.Error.Message == "" {
		return "body is not {\"error\":{\"code\",\"message\"}}", false
	}
	return e.Error.Code, true
}
