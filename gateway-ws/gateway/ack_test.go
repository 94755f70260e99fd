package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"tidings/lib/store"
	"tidings/lib/testenv"
	"tidings/lib/twopc"
)

// The whole ack path through one replica: the pass-through to
// ack-notification, whose wake-up the replica's relay hears on the
// broker's pub/sub connection, and the counter event on the user's
// channel.
func TestAckThroughTheGatewayAnswersTheCountersCountAndPushesIt(t *testing.T) {
	db, g := gatewayWithFunctions(t)
	topicID, ownerID, subs := testenv.Topic(t, db.Pool, 1)
	userTopic := fmt.Sprintf("user:%d", subs[0])
	sub := dial(t, g, subs[0])
	sub.mustJoin(userTopic)

	status, body := postJSON(t, g.httpURL(fmt.Sprintf("/api/topics/%d/notifications", topicID)), `{"title":"ack me"}`,
		http.Header{"Authorization": {"Bearer " + token(t, ownerID)}})
	var published struct {
		NotificationID int64 `json:"notification_id"`
	}
	if err := json.Unmarshal([]byte(body), &published); status != http.StatusOK && status != http.StatusCreated || err != nil {
		t.Fatalf("publish: %d %s", status, body)
	}
	if _, m := sub.read(); m.Event != "notification" {
		t.Fatalf("the subscriber got %v, want the notification", m)
	}

	status, body = postJSON(t, g.httpURL("/function/ack-notification"), fmt.Sprintf(`{"notification_id":%d}`, published.NotificationID),
		http.Header{"Authorization": {"Bearer " + token(t, subs[0])}})
	if status != http.StatusOK || body != `{"unread":0}` {
		t.Errorf("ack through the gateway: %d %s, want 200 {\"unread\":0} from the counter", status, body)
	}
	sub.expect(fmt.Sprintf(`[null,null,%q,"counter",{"unread":0}]`, userTopic))
	testenv.Eventually(t, "the outbox drains", 200, func() bool {
		var n int
		return db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM ack_outbox`).Scan(&n) == nil && n == 0
	})
	if err := store.CheckInvariant(context.Background(), db.Pool, db.Pool); err != nil {
		t.Error(err)
	}
}

// gatewayWithFunctions is a replica over every function of stack.yml,
// served by a local FaaS host, on a database and Redis prefix of the
// test's own; it returns once the replica's ack relay hears wake-ups.
func gatewayWithFunctions(t *testing.T) (*testenv.DB, *testGateway) {
	t.Helper()
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	host := httptest.NewServer(testFunctions(t, db.DBs(), rd))
	t.Cleanup(host.Close)
	cfg := testConfig(rd, db.URL)
	cfg.FaaSURL = host.URL
	g := startGateway(t, cfg)
	wake := twopc.AckWakeChannel(rd.Prefix)
	testenv.Eventually(t, "the replica's relay hears ack wake-ups", 200, func() bool {
		return subscribersOf(t, rd.Client, wake) == 1
	})
	return db, g
}
