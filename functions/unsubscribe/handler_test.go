package unsubscribe

import (
	"context"
	"testing"
	"time"

	"tidings/lib/auth"
	"tidings/lib/directory"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

func TestUnsubscribeRemovesTheSubscriptionAndIsIdempotent(t *testing.T) {
	db := testenv.NewDB(t)
	ctx := context.Background()
	ada, token := testenv.User(t, db.Pool, "ada@example.com")
	topic, _ := store.CreateTopic(ctx, db.Pool, ada, "releases", "")
	if err := store.Subscribe(ctx, db.Pool, topic.ID, ada, false); err != nil {
		t.Fatal(err)
	}
	h := New(db.Pool, auth.NewTokens(testenv.JWTKey, time.Hour), directory.New(db.Pool, nil, nil))
	for i := 0; i < 2; i++ {
		if status, body := testenv.Call(t, h, "POST", `{"topic_id":1}`, token); status != 200 {
			t.Fatalf("unsubscribe #%d: %d %s", i+1, status, body)
		}
	}
	var n int
	_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM subscriptions`).Scan(&n)
	if n != 0 {
		t.Errorf("%d subscriptions left, want 0", n)
	}
	if status, _ := testenv.Call(t, h, "POST", `{"topic_id":2}`, token); status != 404 {
		t.Errorf("unsubscribe from a missing topic: %d, want 404", status)
	}
	if status, _ := testenv.Call(t, h, "POST", `{"topic_id":1}`, ""); status != 401 {
		t.Errorf("unsubscribe without a token: %d, want 401", status)
	}
}
