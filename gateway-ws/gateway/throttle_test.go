package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tidings/functions/login"
	"tidings/infra/fnhost"
	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/ratelimit"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

func TestPublishPastTheUsersQuotaIs429OverHTTPAndRateLimitedOnTheSocket(t *testing.T) {
	db, cfg := newDBConfig(t)
	cfg.Limits.PublishesPerUser = config.Rate{Count: 2, Per: time.Hour}
	var published atomic.Int64
	cfg.Publisher = publisherFunc(func(context.Context, int64, int64, json.RawMessage) (any, error) {
		return map[string]int64{"notification_id": published.Add(1)}, nil
	})
	g := startGateway(t, cfg)
	topicID, ownerID, topic, owner, jr := joinOwnTopic(t, g, db)
	otherTopic, otherOwner, _ := testenv.Topic(t, db.Pool, 0)

	owner.sendRaw(fmt.Sprintf(`[%q,"8",%q,"publish",{"title":"one"}]`, jr, topic))
	owner.expect(fmt.Sprintf(`[%q,"8",%q,"phx_reply",{"status":"ok","response":{"notification_id":1}}]`, jr, topic))
	if status, body, _ := publishHTTP(t, g, ownerID, topicID); status != 201 {
		t.Fatalf("second publish (HTTP) within the quota: %d %s", status, body)
	}
	status, body, retry := publishHTTP(t, g, ownerID, topicID)
	if seconds, err := strconv.Atoi(retry); status != 429 || !strings.Contains(body, `"code":"rate_limited"`) || err != nil || seconds < 1 {
		t.Fatalf("HTTP publish past the quota: %d %s Retry-After %q, want 429 rate_limited with whole seconds", status, body, retry)
	}
	owner.sendRaw(fmt.Sprintf(`[%q,"9",%q,"publish",{"title":"three"}]`, jr, topic))
	_, reply := owner.read()
	var payload struct {
		Status   string
		Response struct {
			Reason     string
			RetryAfter int `json:"retry_after"`
		}
	}
	if err := json.Unmarshal(reply.Payload, &payload); err != nil || payload.Status != "error" ||
		payload.Response.Reason != "rate_limited" || payload.Response.RetryAfter < 1 {
		t.Fatalf("socket publish past the quota: %s (%v), want an error reply rate_limited with retry_after", reply.Payload, err)
	}
	if n := published.Load(); n != 2 {
		t.Errorf("the publisher ran %d times, want 2: a refused publish must not reach it", n)
	}
	if status, body, _ := publishHTTP(t, g, otherOwner, otherTopic); status != 201 {
		t.Fatalf("another user's publish: %d %s, want 201 (a quota of their own)", status, body)
	}
}

// publishHTTP publishes on topicID as userID and returns the status, the
// body and the Retry-After header.
func publishHTTP(t *testing.T, g *testGateway, userID, topicID int64) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, g.httpURL(fmt.Sprintf("/api/topics/%d/notifications", topicID)), strings.NewReader(`{"title":"t"}`))
	req.Header.Set("Authorization", "Bearer "+token(t, userID))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Retry-After")
}

// startAddressEcho is a stand-in FaaS gateway whose login answers the
// X-Forwarded-For it was sent.
func startAddressEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, strings.Join(r.Header.Values("X-Forwarded-For"), "|"))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestProxyTellsFunctionsThePeerAddressNotTheClientsClaim(t *testing.T) {
	rds := testenv.NewRedis(t)
	for _, tc := range []struct {
		name    string
		trusted []string
		sent    string
		want    string
	}{
		{"no trusted proxy: a client's claim is overwritten", nil, "203.0.113.9", "127.0.0.1"},
		{"no trusted proxy, no claim", nil, "", "127.0.0.1"},
		{"behind a trusted proxy: its entry counts", []string{"127.0.0.0/8"}, "203.0.113.9, 198.51.100.4", "198.51.100.4"},
		{"trusted proxy, no header: the peer", []string{"127.0.0.1"}, "", "127.0.0.1"},
		{"an untrusted peer's chain is ignored", []string{"10.0.0.0/8"}, "203.0.113.9", "127.0.0.1"},
	} {
		cfg := testConfig(rds, testenv.AdminURL())
		cfg.FaaSURL = startAddressEcho(t)
		cfg.TrustedProxies = tc.trusted
		g := startGateway(t, cfg)
		header := http.Header{}
		if tc.sent != "" {
			header.Set("X-Forwarded-For", tc.sent)
		}
		if status, got := postJSON(t, g.httpURL("/function/login"), `{}`, header); status != 200 || got != tc.want {
			t.Errorf("%s: the function saw X-Forwarded-For %q (%d), want %q", tc.name, got, status, tc.want)
		}
	}
}

// TestThrottledLoginsThroughTheGatewayLeaveItsBreakerClosed passes the
// real, throttled login through gateway-ws: ada's account answers 429 many
// more times in a row than the breaker's failure threshold, and bob's login
// right after still succeeds (the breaker stayed closed).
func TestThrottledLoginsThroughTheGatewayLeaveItsBreakerClosed(t *testing.T) {
	db := testenv.NewDB(t)
	rds := testenv.NewRedis(t)
	hash, err := auth.HashPassword("analytical")
	if err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{"ada@example.com", "bob@example.com"} {
		if _, err := store.CreateUser(context.Background(), db.Pool, email, "someone", hash, ""); err != nil {
			t.Fatal(err)
		}
	}
	limits := config.Limits{LoginPerAccount: config.Rate{Count: 3, Per: time.Hour}, LoginPerAddress: config.Rate{Count: 100, Per: time.Hour}}
	throttled := login.New(db.Pool, testTokens, ratelimit.New(rds.Client, rds.Prefix, time.Second, nil), limits)
	host := httptest.NewServer(fnhost.New(map[string]fnhost.Function{"login": {Handler: throttled}}, 1<<20, slog.New(slog.DiscardHandler)))
	t.Cleanup(host.Close)
	cfg := testConfig(rds, db.URL)
	cfg.FaaSURL = host.URL
	cfg.Calls.Default.BreakerFailures = 3
	cfg.Calls.Default.BreakerOpenFor = time.Hour
	g := startGateway(t, cfg)

	statuses := map[int]int{}
	for range 20 {
		status, _ := postJSON(t, g.httpURL("/function/login"), `{"email":"ada@example.com","password":"wrong"}`, nil)
		statuses[status]++
	}
	if statuses[401] != 3 || statuses[429] != 17 {
		t.Fatalf("20 wrong passwords through the gateway: %v, want 3 × 401 then 17 × 429", statuses)
	}
	if status, body := postJSON(t, g.httpURL("/function/login"), `{"email":"bob@example.com","password":"analytical"}`, nil); status != 200 {
		t.Fatalf("another account's login right after: %d %s, want 200 (login's breaker must stay closed)", status, body)
	}
}
