package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"tidings/lib/testenv"
)

// TestRedisOutageKeepsClientsAndRecoversByItself kills the gateway's Redis
// (a server of the test's own) while a client is connected and joined, and
// starts it again, empty, on the same port. Meanwhile the client stays
// connected (heartbeats answered), the job API and /healthz answer 503 with
// a clear error, and nothing crashes; afterwards the job API accepts jobs
// and broadcasts reach the client again without it doing anything.
func TestRedisOutageKeepsClientsAndRecoversByItself(t *testing.T) {
	redisServer := testenv.StartRedisServer(t)
	rds := testenv.NewRedis(t) // only for its unique prefix
	// A real directory: a token is checked for revocation there, and
	// refused (503) when it cannot be.
	db := testenv.NewDB(t)
	cfg := testConfig(rds, db.URL)
	cfg.RedisURL = redisServer.URL()
	g := startGateway(t, cfg)
	user, _ := testenv.User(t, db.Pool, "outage@example.test")
	c := dial(t, g, user)
	c.mustJoin(fmt.Sprintf("user:%d", user))
	auth := http.Header{"Authorization": {"Bearer " + token(t, user)}}
	postJob := func() (int, string) {
		return postJSON(t, g.httpURL("/api/jobs/gen-avatar"), `{"seed":"outage","size":16}`, auth)
	}

	redisServer.Stop() // the fault
	c.heartbeat()
	if status, body := postJob(); status != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"unavailable"`) {
		t.Errorf("job API with Redis down: %d %s, want 503 unavailable", status, body)
	}
	if resp, err := http.Get(g.httpURL("/healthz")); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/healthz with Redis down: %v %v, want 503", resp, err)
	}
	c.heartbeat() // still connected after all that

	redisServer.Start()
	testenv.Eventually(t, "the job API to accept jobs again", 200, func() bool {
		status, _ := postJob()
		return status == http.StatusAccepted
	})
	// The pub/sub subscription comes back by itself; once Redis shows it,
	// a broadcast reaches the client (job events for the accepted job may
	// come first).
	topic := fmt.Sprintf("user:%d", user)
	check := redisServer.Client()
	testenv.Eventually(t, "the gateway to subscribe "+topic+" again", 200, func() bool {
		ch := g.srv.broker.channel(topic)
		n, err := check.PubSubNumSub(t.Context(), ch).Result()
		return err == nil && n[ch] > 0
	})
	// The publishing client may still be backing off from its failed
	// dials (go-redis answers with the last dial error until a probe
	// connects), so the broadcast is retried, bounded, too.
	testenv.Eventually(t, "a broadcast to be accepted again", 200, func() bool {
		return g.srv.Broadcast(t.Context(), topic, "notification", map[string]int{"id": 7}) == nil
	})
	for range 20 {
		_, msg := c.read()
		if msg.Event == "notification" {
			return
		}
	}
	t.Fatal("no notification reached the client after Redis came back")
}
