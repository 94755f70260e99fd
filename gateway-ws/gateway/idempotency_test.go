package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"tidings/lib/store"
	"tidings/lib/testenv"
)

// postUntilAnswered posts as a client retrying with its Idempotency-Key
// does: again while the first request with the key is in flight (409
// idempotency_key_in_flight), a bounded number of times.
func postUntilAnswered(t *testing.T, url, body string, header http.Header) (int, string) {
	t.Helper()
	var status int
	var answer string
	testenv.Eventually(t, "the key's first request is answered", 500, func() bool {
		status, answer = postJSON(t, url, body, header)
		return !(status == http.StatusConflict && strings.Contains(answer, "idempotency_key_in_flight"))
	})
	return status, answer
}

// Two identical publishes with one Idempotency-Key, sent at once to two
// replicas, are one notification counted once per subscriber, and both
// answers carry its id; the key with another body is 409.
func TestIdempotentPublishSentToTwoReplicasAtOnceNotifiesOnce(t *testing.T) {
	dbs, cfg := newFunctionStack(t)
	replicas := []*testGateway{startGateway(t, cfg), startGateway(t, cfg)}
	topicID, ownerID, subs := testenv.Topic(t, dbs.Directory.Pool, 2)
	path := fmt.Sprintf("/api/topics/%d/notifications", topicID)
	header := http.Header{"Authorization": {"Bearer " + token(t, ownerID)}, "Idempotency-Key": {"order-42-shipped"}}

	ids := make([]int64, len(replicas))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, g := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status, body := postUntilAnswered(t, g.httpURL(path), `{"title":"order 42 shipped"}`, header)
			var p published
			if json.Unmarshal([]byte(body), &p) != nil || status != http.StatusCreated {
				t.Errorf("replica %d: %d %s, want 201", i, status, body)
			}
			ids[i] = p.NotificationID
		}()
	}
	close(start)
	wg.Wait()
	if ids[0] == 0 || ids[0] != ids[1] {
		t.Fatalf("the two replicas answered notification ids %v, want one and the same", ids)
	}

	status, body := postJSON(t, replicas[1].httpURL(path), `{"title":"order 43 shipped"}`, header)
	if status != http.StatusConflict || !strings.Contains(body, `"code":"idempotency_key_reused"`) {
		t.Errorf("the key with another body: %d %s, want 409 idempotency_key_reused", status, body)
	}
	status, body = postJSON(t, replicas[0].httpURL(path), `{"title":"order 42 shipped"}`, header)
	if p := mustPublished(t, "the same request again", status, body); p.NotificationID != ids[0] {
		t.Errorf("the same request again answered notification %d, want %d", p.NotificationID, ids[0])
	}
	// Another caller's key of the same name is its own.
	other := http.Header{"Authorization": {"Bearer " + token(t, subs[0])}, "Idempotency-Key": {"order-42-shipped"}}
	if status, body := postJSON(t, replicas[0].httpURL(path), `{"title":"order 42 shipped"}`, other); status != http.StatusForbidden {
		t.Errorf("a subscriber with the owner's key: %d %s, want the 403 of its own request", status, body)
	}

	ctx := context.Background()
	var notifications, deliveries int
	if err := dbs.Persist.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM notifications), (SELECT count(*) FROM deliveries)`).Scan(&notifications, &deliveries); err != nil {
		t.Fatal(err)
	}
	if notifications != 1 || deliveries != len(subs) {
		t.Errorf("persist holds %d notifications and %d deliveries, want 1 and %d", notifications, deliveries, len(subs))
	}
	for _, u := range subs {
		if n, err := store.Unread(ctx, dbs.Counter.Pool, u); err != nil || n != 1 {
			t.Errorf("counter of subscriber %d: %d %v, want 1", u, n, err)
		}
	}
	if err := store.CheckInvariant(ctx, dbs.Persist.Pool, dbs.Counter.Pool); err != nil {
		t.Error(err)
	}
}

func TestIdempotentDirectNotificationIsSentOnce(t *testing.T) {
	dbs, cfg := newFunctionStack(t)
	g := startGateway(t, cfg)
	a, _ := testenv.User(t, dbs.Directory.Pool, "a@idem.test")
	header := adminHeader(testAdminKey)
	header.Set("Idempotency-Key", "welcome-a")
	body := fmt.Sprintf(`{"user_ids":[%d],"title":"welcome"}`, a)
	status, answer := postJSON(t, g.httpURL("/api/notifications"), body, header)
	first := mustPublished(t, "first", status, answer)
	status, answer = postJSON(t, g.httpURL("/api/notifications"), body, header)
	again := mustPublished(t, "again", status, answer)
	if again.NotificationID != first.NotificationID {
		t.Errorf("the same direct notification again answered %d, want %d", again.NotificationID, first.NotificationID)
	}
	if n, err := store.Unread(context.Background(), dbs.Counter.Pool, a); err != nil || n != 1 {
		t.Errorf("counter of a: %d %v, want 1", n, err)
	}
}

// A request in flight holds its key: the same key is 409 until it is
// answered, then gets its answer; an answer that invites a retry (the
// transaction aborted) releases the key, so the retry runs again.
func TestIdempotencyKeyInFlightIsRefusedAndAnAbortIsRetried(t *testing.T) {
	db, cfg := newDBConfig(t)
	release := make(chan struct{})
	var calls atomic.Int64
	cfg.Publisher = publisherFunc(func(ctx context.Context, userID, topicID int64, payload json.RawMessage) (any, error) {
		switch calls.Add(1) {
		case 1:
			<-release
			return map[string]int64{"notification_id": 7}, nil
		case 2:
			return nil, &Refused{ReasonAborted}
		}
		return map[string]int64{"notification_id": 8}, nil
	})
	g := startGateway(t, cfg)
	topicID, ownerID, _ := testenv.Topic(t, db.Pool, 0)
	url := g.httpURL(fmt.Sprintf("/api/topics/%d/notifications", topicID))
	header := func(key string) http.Header {
		return http.Header{"Authorization": {"Bearer " + token(t, ownerID)}, "Idempotency-Key": {key}}
	}

	answered := make(chan string, 1)
	go func() {
		status, body := postJSON(t, url, `{"title":"t"}`, header("k1"))
		answered <- fmt.Sprint(status, " ", body)
	}()
	testenv.Eventually(t, "the first request reaches the publisher", 200, func() bool { return calls.Load() == 1 })
	if status, body := postJSON(t, url, `{"title":"t"}`, header("k1")); status != http.StatusConflict || !strings.Contains(body, "idempotency_key_in_flight") {
		t.Errorf("the key while its request is in flight: %d %s, want 409 idempotency_key_in_flight", status, body)
	}
	close(release)
	if got := <-answered; got != `201 {"notification_id":7}` {
		t.Errorf("the first request: %s", got)
	}
	status, body := postJSON(t, url, `{"title":"t"}`, header("k1"))
	if status != http.StatusCreated || body != `{"notification_id":7}` {
		t.Errorf("the key after its answer: %d %s, want the first answer", status, body)
	}

	if status, body := postJSON(t, url, `{"title":"t"}`, header("k2")); status != http.StatusServiceUnavailable {
		t.Errorf("an aborted publish: %d %s, want 503", status, body)
	}
	if status, body := postJSON(t, url, `{"title":"t"}`, header("k2")); status != http.StatusCreated || body != `{"notification_id":8}` {
		t.Errorf("the key of an aborted publish, again: %d %s, want a new run's 201", status, body)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("the publisher ran %d times, want 3 (a replay runs nothing)", n)
	}
	for _, bad := range []http.Header{header(""), header(strings.Repeat("k", MaxIdempotencyKey+1)), header("caf\u00e9"),
		{"Authorization": {"Bearer " + token(t, ownerID)}, "Idempotency-Key": {"a", "b"}}} {
		if status, body := postJSON(t, url, `{"title":"t"}`, bad); status != http.StatusBadRequest {
			t.Errorf("Idempotency-Key %q: %d %s, want 400", bad.Values("Idempotency-Key"), status, body)
		}
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("a bad key ran the publisher (%d runs)", n)
	}
}
