package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"tidings/functions"
	"tidings/infra/fnhost"
	"tidings/lib/config"
	"tidings/lib/logging"
	"tidings/lib/notification"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

const testAdminKey = "gateway-test-admin-key"

// testFunctions is the real functions of stack.yml over dbs, served as
// the FaaS gateway serves them (/function/<name>).
func testFunctions(t *testing.T, dbs store.DBs, rd *testenv.Redis) http.Handler {
	t.Helper()
	deps := &functions.Deps{
		Config: config.Config{RedisPrefix: rd.Prefix, InternalKey: testInternalKey, JWTSecret: testSecret, Limits: config.DefaultLimits(), MaxBodyBytes: 64 << 10},
		DBs:    dbs, Redis: rd.Client, Tokens: testTokens,
	}
	fns, err := fnhost.Load("../../stack.yml", deps)
	if err != nil {
		t.Fatal(err)
	}
	return fnhost.New(fns, 64<<10, logging.NewTo(io.Discard, "error", "test"))
}

// newFunctionStack serves the real functions over three databases of the
// test's own, as a deployment with PERSIST_DATABASE_URL and
// COUNTER_DATABASE_URL set has them, and returns a gateway configuration
// calling them, with the admin key testAdminKey. Gateways started with it
// are replicas of one another (one Redis prefix).
func newFunctionStack(t *testing.T) (*testenv.Databases, Config) {
	t.Helper()
	dbs, rd := testenv.NewDatabases(t), testenv.NewRedis(t)
	host := httptest.NewServer(testFunctions(t, dbs.DBs(), rd))
	t.Cleanup(host.Close)
	cfg := testConfig(rd, dbs.Directory.URL)
	cfg.FaaSURL = host.URL
	cfg.AdminKey = testAdminKey
	return dbs, cfg
}

func adminHeader(key string) http.Header { return http.Header{"Authorization": {"Bearer " + key}} }

// published is the answer to a committed publish.
type published struct {
	NotificationID int64 `json:"notification_id"`
	Recipients     int   `json:"recipients"`
}

func mustPublished(t *testing.T, what string, status int, body string) published {
	t.Helper()
	var p published
	if err := json.Unmarshal([]byte(body), &p); status != http.StatusCreated || err != nil || p.NotificationID == 0 {
		t.Fatalf("%s: %d %s, want 201 {notification_id}", what, status, body)
	}
	return p
}

// readNotification reads the next frame of c, which must be a
// notification event, and returns its payload.
func (c *client) readNotification() notification.Event {
	c.t.Helper()
	raw, m := c.read()
	var ev notification.Event
	if m.Event != notification.EventName || json.Unmarshal(m.Payload, &ev) != nil {
		c.t.Fatalf("got %s, want a notification event", raw)
	}
	return ev
}

func TestDirectNotificationReachesThreeUsersSocketsWithTheirUnreadCounts(t *testing.T) {
	dbs, cfg := newFunctionStack(t)
	g := startGateway(t, cfg)
	dir := dbs.Directory.Pool
	// a already has one unread notification (from a topic), b and c none.
	topicID, ownerID, subs := testenv.Topic(t, dir, 1)
	a := subs[0]
	b, _ := testenv.User(t, dir, "b@direct.test")
	c, _ := testenv.User(t, dir, "c@direct.test")
	sockets := map[int64]*client{}
	for _, u := range []int64{a, b, c} {
		sockets[u] = dial(t, g, u)
		sockets[u].mustJoin(fmt.Sprintf("user:%d", u))
	}
	status, body := postJSON(t, g.httpURL(fmt.Sprintf("/api/topics/%d/notifications", topicID)), `{"title":"from a topic"}`,
		http.Header{"Authorization": {"Bearer " + token(t, ownerID)}})
	mustPublished(t, "topic publish", status, body)
	if ev := sockets[a].readNotification(); ev.Unread != 1 || int64(ev.TopicID) != topicID {
		t.Fatalf("topic notification to a: %+v", ev)
	}

	// a is named twice: notified and counted once.
	status, body = postJSON(t, g.httpURL("/api/notifications"),
		fmt.Sprintf(`{"user_ids":[%d,%d,%d,%d],"title":"your order shipped","body":"track it"}`, c, a, b, a), adminHeader(testAdminKey))
	p := mustPublished(t, "direct notification", status, body)
	if p.Recipients != 3 {
		t.Errorf("direct notification reached %d recipients, want 3", p.Recipients)
	}
	for u, unread := range map[int64]int64{a: 2, b: 1, c: 1} {
		raw, m := sockets[u].read()
		want := fmt.Sprintf(`"id":%d,"sender_id":null,"title":"your order shipped","topic_id":null,"unread":%d}`, p.NotificationID, unread)
		if m.Event != notification.EventName || !strings.HasSuffix(raw, want+"]") || !strings.Contains(raw, `{"body":"track it",`) {
			t.Errorf("user %d got\n  %s\nwant a notification ending\n  %s", u, raw, want)
		}
	}

	// The history lists it with no topic and no sender.
	req, _ := http.NewRequest(http.MethodGet, g.httpURL("/function/list-notifications"), nil)
	req.Header.Set("Authorization", "Bearer "+token(t, b))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	listed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf(`"id":%d,"topic_id":null,"sender_id":null,"title":"your order shipped"`, p.NotificationID); !strings.Contains(string(listed), want) {
		t.Errorf("b's list-notifications: %d %s, want it to hold %s", resp.StatusCode, listed, want)
	}
	ctx := context.Background()
	for u, want := range map[int64]int64{a: 2, b: 1, c: 1} {
		if n, err := store.Unread(ctx, dbs.Counter.Pool, u); err != nil || n != want {
			t.Errorf("counter of user %d: %d %v, want %d", u, n, err, want)
		}
	}
	if err := store.CheckInvariant(ctx, dbs.Persist.Pool, dbs.Counter.Pool); err != nil {
		t.Error(err)
	}
	testenv.Eventually(t, "the direct notification's recipient set is forgotten after its delivery", 200, func() bool {
		var n int
		return dir.QueryRow(ctx, `SELECT count(*) FROM recipient_sets`).Scan(&n) == nil && n == 0
	})
}

func TestDirectNotificationRefusedWritesNothingInAnyDatabase(t *testing.T) {
	dbs, cfg := newFunctionStack(t)
	g := startGateway(t, cfg)
	a, _ := testenv.User(t, dbs.Directory.Pool, "a@direct.test")
	b, _ := testenv.User(t, dbs.Directory.Pool, "b@direct.test")
	before := dbs.Snapshot(t)
	many := make([]string, 1001)
	for i := range many {
		many[i] = fmt.Sprint(a)
	}
	url := g.httpURL("/api/notifications")
	for _, c := range []struct {
		name, body string
		header     http.Header
		status     int
		code       string
		says       string
	}{
		{"unknown ids", fmt.Sprintf(`{"user_ids":[%d,%d,%d,%d],"title":"t"}`, a, b+1000, b, b+7), adminHeader(testAdminKey), 400, "unknown_users",
			fmt.Sprintf("no such users: %d, %d", b+7, b+1000)},
		{"no admin key", fmt.Sprintf(`{"user_ids":[%d],"title":"t"}`, a), http.Header{}, 401, "unauthorized", ""},
		{"wrong admin key", fmt.Sprintf(`{"user_ids":[%d],"title":"t"}`, a), adminHeader(testAdminKey + "x"), 401, "unauthorized", ""},
		{"a user's token", fmt.Sprintf(`{"user_ids":[%d],"title":"t"}`, a), adminHeader(token(t, a)), 401, "unauthorized", ""},
		{"no users", `{"user_ids":[],"title":"t"}`, adminHeader(testAdminKey), 400, "invalid", "1 to 1000"},
		{"too many users", `{"user_ids":[` + strings.Join(many, ",") + `],"title":"t"}`, adminHeader(testAdminKey), 400, "invalid", "1 to 1000"},
		{"a negative id", fmt.Sprintf(`{"user_ids":[%d,-1],"title":"t"}`, a), adminHeader(testAdminKey), 400, "invalid", "positive"},
		{"blank title", fmt.Sprintf(`{"user_ids":[%d],"title":" "}`, a), adminHeader(testAdminKey), 400, "invalid", "title"},
		{"unknown field", fmt.Sprintf(`{"user_ids":[%d],"title":"t","topic_id":1}`, a), adminHeader(testAdminKey), 400, "", ""},
		{"ids as strings", `{"user_ids":["1"],"title":"t"}`, adminHeader(testAdminKey), 400, "", ""},
	} {
		status, body := postJSON(t, url, c.body, c.header)
		if status != c.status || !strings.Contains(body, fmt.Sprintf(`"code":%q`, c.code)) && c.code != "" || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d %s, want %d with code %q saying %q", c.name, status, body, c.status, c.code, c.says)
		}
	}
	if after := dbs.Snapshot(t); after != before {
		t.Errorf("refused direct notifications changed the databases:\nbefore\n%s\nafter\n%s", before, after)
	}
}

func TestDirectNotificationsNeedAConfiguredAdminKey(t *testing.T) {
	db, cfg := newDBConfig(t)
	cfg.AdminKey = ""
	g := startGateway(t, cfg)
	a, _ := testenv.User(t, db.Pool, "a@direct.test")
	status, body := postJSON(t, g.httpURL("/api/notifications"), fmt.Sprintf(`{"user_ids":[%d],"title":"t"}`, a), adminHeader(""))
	if status != http.StatusUnauthorized {
		t.Errorf("an empty Bearer with no admin key configured: %d %s, want 401", status, body)
	}
	status, body = postJSON(t, g.httpURL("/api/notifications"), fmt.Sprintf(`{"user_ids":[%d],"title":"t"}`, a), adminHeader("anything"))
	if status != http.StatusUnauthorized || !strings.Contains(body, "no admin key is configured") {
		t.Errorf("any key with no admin key configured: %d %s, want 401 saying none is configured", status, body)
	}
}
