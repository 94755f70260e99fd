package ackall_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	ackall "tidings/functions/ack-all"
	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/notification"
	"tidings/lib/store"
	"tidings/lib/testenv"
	"tidings/lib/twopc"
)

var tokens = auth.NewTokens(testenv.JWTKey, time.Hour)

// inbox is a user with a token and n committed notifications delivered
// to them, on databases of the test's own.
func inbox(t *testing.T, n int) (dbs *testenv.Databases, token string) {
	t.Helper()
	ctx := context.Background()
	dbs = testenv.NewDatabases(t)
	user, token := testenv.User(t, dbs.Directory.Pool, "reader@example.com")
	for i := 0; i < n; i++ {
		tx := fmt.Sprintf("tx-%d", i)
		draft := notification.Draft{TopicID: 1, SenderID: 1, Message: notification.Message{Title: "hello"}}
		if _, err := store.PrepareNotificationFor(ctx, dbs.Persist.Pool, tx, draft, []int64{user}); err != nil {
			t.Fatal(err)
		}
		if err := store.CommitNotification(ctx, dbs.Persist.Pool, tx); err != nil {
			t.Fatal(err)
		}
	}
	return dbs, token
}

func call(t *testing.T, h fn.Handler, method, body, token string) (int, string) {
	t.Helper()
	s, out := testenv.Call(t, h, method, body, token)
	return s, strings.TrimSpace(string(out))
}

// With no relay answering, ack-all marks everything, waits ACK_WAIT and
// answers 202 with the persist participant's count, 0; one outbox row
// carries all the deliveries.
func TestAckAllWithNoRelayAnswersPendingWithOneAckForAll(t *testing.T) {
	dbs, token := inbox(t, 3)
	rd := testenv.NewRedis(t)
	h := ackall.New(dbs.Directory.Pool, dbs.Persist.Pool, tokens, rd.Client, rd.Prefix, twopc.AckSettings{Wait: time.Second}, nil)
	if s, out := call(t, h, "POST", "{}", token); s != 202 || out != `{"unread":0,"pending":true}` {
		t.Errorf("ack-all with no relay: %d %s, want 202 {\"unread\":0,\"pending\":true}", s, out)
	}
	acks, err := store.PendingAcks(context.Background(), dbs.Persist.Pool, 10)
	if err != nil || len(acks) != 1 || acks[0].Deliveries != 3 {
		t.Errorf("outbox %+v %v, want one ack of 3 deliveries", acks, err)
	}
}

// Bad calls are refused in the error shape and change nothing.
func TestAckAllRefusesBadCallsAndChangesNothing(t *testing.T) {
	dbs, token := inbox(t, 2)
	h := ackall.New(dbs.Directory.Pool, dbs.Persist.Pool, tokens, nil, "", twopc.AckSettings{}, nil)
	before := dbs.Snapshot(t)
	for _, c := range []struct {
		name, method, body, token string
		status                    int
	}{
		{"no token", "POST", "{}", "", 401},
		{"forged token", "POST", "{}", "not-a-jwt", 401},
		{"empty body", "POST", "", token, 400},
		{"GET", "GET", "", token, 405},
		{"unknown field", "POST", `{"all":true}`, token, 400},
		{"not an object", "POST", `[]`, token, 400},
		{"trailing data", "POST", `{}{}`, token, 400},
	} {
		s, out := call(t, h, c.method, c.body, c.token)
		if s != c.status || testenv.ErrorCode([]byte(out)) == "" {
			t.Errorf("%s: %d %s, want %d in the error shape", c.name, s, out, c.status)
		}
	}
	if after := dbs.Snapshot(t); after != before {
		t.Errorf("refused ack-alls changed the database")
	}
}

// An unreachable persist database is a 503 in the error shape, not a 500.
func TestAckAllWithThePersistDatabaseUnreachableIs503(t *testing.T) {
	dbs, token := inbox(t, 1)
	unreachable, err := store.NewPool(context.Background(), "postgres://postgres@127.0.0.1:1/tidings?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unreachable.Close)
	h := ackall.New(dbs.Directory.Pool, unreachable, tokens, nil, "", twopc.AckSettings{}, nil)
	if s, out := call(t, h, "POST", "{}", token); s != 503 || testenv.ErrorCode([]byte(out)) != "unavailable" {
		t.Errorf("ack-all with the persist database unreachable: %d %s, want 503 unavailable", s, out)
	}
}
