package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"tidings/functions"
	"tidings/infra/fnhost"
	"tidings/lib/auth"
	"tidings/lib/cache"
	"tidings/lib/config"
	"tidings/lib/directory"
	"tidings/lib/logging"
	"tidings/lib/testenv"
)

// startUnsubscribe serves the real unsubscribe function as a FaaS gateway
// would, with its own near cache on the test's Redis prefix: a process of
// its own, as in production. It returns the URL to give as FAAS_URL.
func startUnsubscribe(t *testing.T, rds *testenv.Redis, db *testenv.DB) string {
	t.Helper()
	quiet := logging.NewTo(io.Discard, "error", "test")
	c, err := cache.New(cache.Config{Store: cache.Near, Prefix: rds.Prefix, Logger: quiet}, rds.Client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	deps := &functions.Deps{
		Config: config.Config{JWTSecret: testSecret, InternalKey: testInternalKey},
		DBs:    db.DBs(), Redis: rds.Client, Tokens: testTokens,
		Cache: c, Directory: directory.New(db.Pool, c, nil),
	}
	h, err := functions.New("unsubscribe", deps)
	if err != nil {
		t.Fatal(err)
	}
	fns := map[string]fnhost.Function{"unsubscribe": {Handler: h}}
	srv := httptest.NewServer(fnhost.New(fns, 1<<20, quiet))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestUnsubscribeThroughOneReplicaClosesTheTopicOnEvery: a subscriber has a
// socket on each of two replicas joined to topic:<id>, and unsubscribes
// through replica B's pass-through. Both sockets get phx_close for the
// topic and none of its later broadcasts; another subscriber on replica A
// keeps receiving them; the unsubscribed user can no longer join.
func TestUnsubscribeThroughOneReplicaClosesTheTopicOnEvery(t *testing.T) {
	rds, db := testenv.NewRedis(t), testenv.NewDB(t)
	faas := startUnsubscribe(t, rds, db)
	a := startGateway(t, testConfig(rds, db.URL))
	cfgB := testConfig(rds, db.URL)
	cfgB.FaaSURL = faas
	b := startGateway(t, cfgB)
	topicID, _, subs := testenv.Topic(t, db.Pool, 2)
	topic := fmt.Sprintf("topic:%d", topicID)
	leaver, stayer := subs[0], subs[1]

	leaverOnA, leaverOnB, stayerOnA := dial(t, a, leaver), dial(t, b, leaver), dial(t, a, stayer)
	leaverOnA.mustJoin(fmt.Sprintf("user:%d", leaver)) // another channel, which stays
	joinA := leaverOnA.mustJoin(topic)
	joinB := leaverOnB.mustJoin(topic)
	stayerOnA.mustJoin(topic)

	status, body := postJSON(t, b.httpURL("/function/unsubscribe"), fmt.Sprintf(`{"topic_id":%d}`, topicID),
		http.Header{"Authorization": {"Bearer " + token(t, leaver)}})
	if status != http.StatusOK {
		t.Fatalf("unsubscribe through replica B: %d %s, want 200", status, body)
	}
	leaverOnA.expect(fmt.Sprintf(`[%q,%q,%q,"phx_close",{}]`, joinA, joinA, topic))
	leaverOnB.expect(fmt.Sprintf(`[%q,%q,%q,"phx_close",{}]`, joinB, joinB, topic))

	if err := b.srv.Broadcast(context.Background(), topic, "news", map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	stayerOnA.expect(fmt.Sprintf(`[null,null,%q,"news",{"n":1}]`, topic))
	// The hub hands a frame to all of a topic's members at once, so had a
	// revoked socket still been one, the broadcast would come before these
	// replies.
	leaverOnA.heartbeat()
	leaverOnB.heartbeat()
	// The topic is no longer joined, and no longer joinable.
	leaverOnA.send(joinA, "50", topic, "publish", map[string]any{"title": "x"})
	leaverOnA.expect(fmt.Sprintf(`[null,"50",%q,"phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`, topic))
	if got := leaverOnA.join(topic); !strings.Contains(got, `"status":"error"`) || !strings.Contains(got, `"unauthorized"`) {
		t.Fatalf("join after unsubscribing: %s, want an unauthorized error", got)
	}
	// Its other channel is untouched.
	if err := a.srv.Broadcast(context.Background(), fmt.Sprintf("user:%d", leaver), "counter", map[string]int{"unread": 1}); err != nil {
		t.Fatal(err)
	}
	leaverOnA.expect(fmt.Sprintf(`[null,null,"user:%d","counter",{"unread":1}]`, leaver))
}

// TestSocketClosesWhenItsTokenExpires: a socket opened with a token that
// expires within two seconds works until then, and is then closed with
// 4001 "token expired".
func TestSocketClosesWhenItsTokenExpires(t *testing.T) {
	rds, db := testenv.NewRedis(t), testenv.NewDB(t)
	g := startGateway(t, testConfig(rds, db.URL))
	userID, _ := testenv.User(t, db.Pool, "brief@example.test")
	short, expires, err := auth.NewTokens(testSecret, 2*time.Second).Issue(userID)
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.DefaultDialer.Dial(g.socketURL(short), nil)
	if err != nil {
		t.Fatalf("dial with a token valid until %s: %v", expires, err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	c := &client{t: t, ws: ws}
	c.mustJoin(fmt.Sprintf("user:%d", userID))
	ce := c.expectClose(5)
	if ce.Code != CloseTokenExpired || ce.Text != "token expired" {
		t.Fatalf("closed with %d %q, want %d \"token expired\"", ce.Code, ce.Text, CloseTokenExpired)
	}
	if time.Now().Before(expires) {
		t.Fatalf("closed before the token's expiry %s", expires)
	}
}

// TestSocketRefusesATokenWhoseUserIsGone: a valid token of a user deleted
// since it was issued gets 401 in the JSON error shape at connect.
func TestSocketRefusesATokenWhoseUserIsGone(t *testing.T) {
	rds, db := testenv.NewRedis(t), testenv.NewDB(t)
	g := startGateway(t, testConfig(rds, db.URL))
	userID, _ := testenv.User(t, db.Pool, "gone@example.test")
	tok := token(t, userID)
	if _, err := db.Pool.Exec(context.Background(), `DELETE FROM users WHERE id = $1`, userID); err != nil {
		t.Fatal(err)
	}
	_, resp, err := websocket.DefaultDialer.Dial(g.socketURL(tok), nil)
	if err == nil || resp == nil {
		t.Fatalf("dial with a deleted user's token: %v, want a refused handshake", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || testenv.ErrorCode(body) != "unauthorized" {
		t.Fatalf("dial with a deleted user's token: %d %s, want 401 unauthorized", resp.StatusCode, body)
	}
	// A user who exists still connects.
	other, _ := testenv.User(t, db.Pool, "here@example.test")
	dial(t, g, other).heartbeat()
}

// revokeCase is one subscriber of a topic, connected to a gateway whose
// directory is read through a test's wrapper, and the unsubscribe function
// serving the same Redis and database.
type revokeCase struct {
	t       *testing.T
	faas    string
	g       *testGateway
	topicID int64
	topic   string
	c       *client
	user    int64
}

// startRevokeCase starts it. access is the gateway's Access; the gateway's
// own directory, which access wraps, is stored in *inner once it is up.
func startRevokeCase(t *testing.T, access Access, inner *Access) *revokeCase {
	t.Helper()
	rds, db := testenv.NewRedis(t), testenv.NewDB(t)
	faas := startUnsubscribe(t, rds, db)
	cfg := testConfig(rds, db.URL)
	cfg.Access = access
	g := startGateway(t, cfg)
	*inner = g.srv.dir
	topicID, _, subs := testenv.Topic(t, db.Pool, 1)
	return &revokeCase{t: t, faas: faas, g: g, topicID: topicID, topic: fmt.Sprintf("topic:%d", topicID),
		c: dial(t, g, subs[0]), user: subs[0]}
}

// unsubscribe unsubscribes the user from the topic through the function.
func (r *revokeCase) unsubscribe() {
	r.t.Helper()
	status, body := postJSON(r.t, r.faas+"/function/unsubscribe", fmt.Sprintf(`{"topic_id":%d}`, r.topicID),
		http.Header{"Authorization": {"Bearer " + token(r.t, r.user)}})
	if status != http.StatusOK {
		r.t.Fatalf("unsubscribe: %d %s, want 200", status, body)
	}
}

// flakyAccess is the directory, except that the next `failures` topic
// owner lookups fail as they do while PostgreSQL is unreachable.
type flakyAccess struct {
	Access
	failures atomic.Int32
	failed   atomic.Int32
}

func (a *flakyAccess) TopicOwner(ctx context.Context, topicID int64) (int64, error) {
	if a.failures.Add(-1) >= 0 {
		a.failed.Add(1)
		return 0, errors.New("injected: database unreachable")
	}
	return a.Access.TopicOwner(ctx, topicID)
}

// TestRevocationIsRetriedWhileTheDirectoryCannotAnswer: the checks that
// follow an unsubscribe fail three times (the fault, injected after the
// join); the membership is still revoked once they answer.
func TestRevocationIsRetriedWhileTheDirectoryCannotAnswer(t *testing.T) {
	access := &flakyAccess{}
	r := startRevokeCase(t, access, &access.Access)
	jr := r.c.mustJoin(r.topic)

	access.failures.Store(3)
	r.unsubscribe()
	r.c.expect(fmt.Sprintf(`[%q,%q,%q,"phx_close",{}]`, jr, jr, r.topic))
	if n := access.failed.Load(); n != 3 {
		t.Fatalf("%d checks failed before the revocation, want the 3 injected", n)
	}
}

// staleAccess is the directory, except that the first subscription lookup
// waits at a gate and then answers "subscribed" whatever the truth: a join
// authorised just before an unsubscribe, whose answer is late.
type staleAccess struct {
	Access
	first   atomic.Bool
	entered chan struct{}
	gate    chan struct{}
}

func (a *staleAccess) IsSubscriber(ctx context.Context, topicID, userID int64) (bool, error) {
	if a.first.CompareAndSwap(false, true) {
		close(a.entered)
		<-a.gate
		return true, nil
	}
	return a.Access.IsSubscriber(ctx, topicID, userID)
}

// TestJoinAuthorisedBeforeAnUnsubscribeIsRefused: a join's authorisation
// answers "subscribed", then the user unsubscribes (and every replica has
// heard of it, finding no member yet), then the join goes on. The join is
// refused rather than leaving a membership nothing will revoke.
func TestJoinAuthorisedBeforeAnUnsubscribeIsRefused(t *testing.T) {
	access := &staleAccess{entered: make(chan struct{}), gate: make(chan struct{})}
	r := startRevokeCase(t, access, &access.Access)
	g, c, topic := r.g, r.c, r.topic

	c.send("1", "1", topic, EventJoin, map[string]any{})
	select {
	case <-access.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the join never asked whether the user subscribes")
	}
	heard := g.srv.revoker.heard.Load()
	r.unsubscribe()
	for i := 0; g.srv.revoker.heard.Load() == heard; i++ { // bounded: the change travels through Redis
		if i == 500 {
			t.Fatal("the replica never heard of the unsubscribe")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(access.gate)
	c.expect(fmt.Sprintf(`["1","1",%q,"phx_reply",{"status":"error","response":{"reason":"unauthorized"}}]`, topic))
	c.heartbeat() // nothing else came: no phx_close for a channel never opened
}
