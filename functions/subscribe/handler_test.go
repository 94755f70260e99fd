package subscribe

import (
	"context"
	"testing"
	"time"

	"tidings/lib/auth"
	"tidings/lib/directory"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

func TestSubscribeIsIdempotentAndKeepsTheEmailChoice(t *testing.T) {
	db := testenv.NewDB(t)
	ctx := context.Background()
	ada, _ := testenv.User(t, db.Pool, "ada@example.com")
	bob, token := testenv.User(t, db.Pool, "bob@example.com")
	topic, _ := store.CreateTopic(ctx, db.Pool, ada, "releases", "")
	h := New(db.Pool, auth.NewTokens(testenv.JWTKey, time.Hour), directory.New(db.Pool, nil, nil))
	for _, body := range []string{`{"topic_id":1}`, `{"topic_id":1}`, `{"topic_id":1,"email":true}`} {
		if status, out := testenv.Call(t, h, "POST", body, token); status != 200 {
			t.Fatalf("subscribe %s: %d %s", body, status, out)
		}
	}
	var n int
	var email bool
	err := db.Pool.QueryRow(ctx, `SELECT count(*), bool_and(email) FROM subscriptions WHERE topic_id = $1 AND user_id = $2`, topic.ID, bob).Scan(&n, &email)
	if err != nil || n != 1 || !email {
		t.Errorf("subscriptions: %d rows, email=%v (%v); want one row with email", n, email, err)
	}
}

func TestSubscribeRefusesBadRequestsAndChangesNothing(t *testing.T) {
	db := testenv.NewDB(t)
	ada, token := testenv.User(t, db.Pool, "ada@example.com")
	if _, err := store.CreateTopic(context.Background(), db.Pool, ada, "releases", ""); err != nil {
		t.Fatal(err)
	}
	h := New(db.Pool, auth.NewTokens(testenv.JWTKey, time.Hour), directory.New(db.Pool, nil, nil))
	before := testenv.Snapshot(t, db.Pool)
	for _, c := range []struct {
		name, body, token string
		status            int
	}{
		{"missing topic", `{"topic_id":404}`, token, 404},
		{"no topic id", `{}`, token, 400},
		{"negative topic id", `{"topic_id":-1}`, token, 400},
		{"topic id as string", `{"topic_id":"1"}`, token, 400},
		{"no token", `{"topic_id":1}`, "", 401},
	} {
		if status, body := testenv.Call(t, h, "POST", c.body, c.token); status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, body, c.status)
		}
	}
	if after := testenv.Snapshot(t, db.Pool); after != before {
		t.Error("refused subscriptions changed the database")
	}
}
