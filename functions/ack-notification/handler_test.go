package acknotification_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	acknotification "tidings/functions/ack-notification"
	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/notification"
	"tidings/lib/redisx"
	"tidings/lib/store"
	"tidings/lib/testenv"
	"tidings/lib/twopc"
)

var tokens = auth.NewTokens(testenv.JWTKey, time.Hour)

// delivered is a user with a token and a committed notification delivered
// to them, on databases of the test's own.
func delivered(t *testing.T) (dbs *testenv.Databases, token string, notificationID int64) {
	t.Helper()
	ctx := context.Background()
	dbs = testenv.NewDatabases(t)
	user, token := testenv.User(t, dbs.Directory.Pool, "reader@example.com")
	draft := notification.Draft{TopicID: 1, SenderID: 1, Message: notification.Message{Title: "hello"}}
	id, err := store.PrepareNotificationFor(ctx, dbs.Persist.Pool, "tx-1", draft, []int64{user})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CommitNotification(ctx, dbs.Persist.Pool, "tx-1"); err != nil {
		t.Fatal(err)
	}
	return dbs, token, id
}

func ack(t *testing.T, h fn.Handler, token string, id int64) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest("POST", "/", strings.NewReader(fmt.Sprintf(`{"notification_id":%d}`, id)))
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	(&fn.Adapter{Handler: h}).ServeHTTP(w, r)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

func outbox(t *testing.T, dbs *testenv.Databases) int {
	t.Helper()
	var n int
	if err := dbs.Persist.Pool.QueryRow(context.Background(), `SELECT count(*) FROM ack_outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// With no relay answering, the ack wakes the relays, waits ACK_WAIT and
// answers 202 with the persist participant's count; the ack stays
// recorded for the relay.
func TestAckWithNoRelayAnswersPendingAfterTheWait(t *testing.T) {
	dbs, token, id := delivered(t)
	rd := testenv.NewRedis(t)
	wakeups := redisx.Subscribe(context.Background(), rd.Client, twopc.AckWakeChannel(rd.Prefix))
	t.Cleanup(func() { _ = wakeups.Close() })
	if _, err := wakeups.Receive(context.Background()); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	h := acknotification.New(dbs.Directory.Pool, dbs.Persist.Pool, tokens, rd.Client, rd.Prefix, twopc.AckSettings{Wait: time.Second}, nil)
	if s, out := ack(t, h, token, id); s != 202 || out["unread"] != 0.0 || out["pending"] != true {
		t.Errorf("ack with no relay: %d %v, want 202 pending with unread 0", s, out)
	}
	msg, err := wakeups.ReceiveMessage(context.Background())
	if err != nil || msg.Payload == "" {
		t.Errorf("no wake-up published: %v %v", msg, err)
	}
	if n := outbox(t, dbs); n != 1 {
		t.Errorf("%d acks in the outbox, want the one recorded", n)
	}
}

// Redis down: the ack is still recorded and answered at once, 202.
func TestAckWithRedisDownIsRecordedAndPending(t *testing.T) {
	dbs, token, id := delivered(t)
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: time.Second, MaxRetries: -1})
	t.Cleanup(func() { _ = dead.Close() })
	h := acknotification.New(dbs.Directory.Pool, dbs.Persist.Pool, tokens, dead, "tidings-test:", twopc.AckSettings{}, nil)
	if s, out := ack(t, h, token, id); s != 202 || out["unread"] != 0.0 || out["pending"] != true {
		t.Errorf("ack with Redis down: %d %v, want 202 pending with unread 0", s, out)
	}
	if n := outbox(t, dbs); n != 1 {
		t.Errorf("%d acks in the outbox, want the one recorded", n)
	}
}

// An unreachable persist database is a 503 in the error shape, not a 500.
func TestAckWithThePersistDatabaseUnreachableIs503(t *testing.T) {
	dbs, token, id := delivered(t)
	unreachable, err := store.NewPool(context.Background(), "postgres://postgres@127.0.0.1:1/tidings?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unreachable.Close)
	h := acknotification.New(dbs.Directory.Pool, unreachable, tokens, nil, "", twopc.AckSettings{}, nil)
	s, out := ack(t, h, token, id)
	if e, _ := out["error"].(map[string]any); s != 503 || e["code"] != "unavailable" {
		t.Errorf("ack with the persist database unreachable: %d %v, want 503 unavailable", s, out)
	}
	if n := outbox(t, dbs); n != 0 {
		t.Errorf("%d acks in the outbox, want none", n)
	}
}
