package createtopic

import (
	"testing"
	"time"

	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/ratelimit"
	"tidings/lib/testenv"
)

func TestCreateTopicAnswers429PastTheUsersQuota(t *testing.T) {
	db := testenv.NewDB(t)
	r := testenv.NewRedis(t)
	_, ada := testenv.User(t, db.Pool, "ada@example.com")
	_, bob := testenv.User(t, db.Pool, "bob@example.com")
	limits := config.Limits{TopicsPerUser: config.Rate{Count: 2, Per: time.Hour}}
	h := New(db.Pool, auth.NewTokens(testenv.JWTKey, time.Hour), ratelimit.New(r.Client, r.Prefix, time.Second, nil), limits)
	for _, name := range []string{"one", "two"} {
		if status, body := testenv.Call(t, h, "POST", `{"name":"`+name+`"}`, ada); status != 201 {
			t.Fatalf("topic %s within the quota: %d %s", name, status, body)
		}
	}
	before := testenv.Snapshot(t, db.Pool)
	if status, body := testenv.Call(t, h, "POST", `{"name":"three"}`, ada); status != 429 || testenv.ErrorCode(body) != "rate_limited" {
		t.Fatalf("topic past the quota: %d %s, want 429 rate_limited", status, body)
	}
	if testenv.Snapshot(t, db.Pool) != before {
		t.Error("a refused topic changed the database")
	}
	if status, body := testenv.Call(t, h, "POST", `{"name":"three"}`, bob); status != 201 {
		t.Fatalf("another user's topic: %d %s, want 201 (a quota of their own)", status, body)
	}
}
