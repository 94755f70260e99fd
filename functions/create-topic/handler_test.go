package createtopic

import (
	"strings"
	"testing"
	"time"

	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/testenv"
)

func TestCreateTopicRecordsTheCallerAsOwner(t *testing.T) {
	db := testenv.NewDB(t)
	ada, token := testenv.User(t, db.Pool, "ada@example.com")
	h := New(db.Pool, auth.NewTokens(testenv.JWTKey, time.Hour), nil, config.Limits{})
	status, body := testenv.Call(t, h, "POST", `{"name":" releases ","description":"new versions"}`, token)
	if status != 201 {
		t.Fatalf("create-topic: %d %s", status, body)
	}
	var out Response
	testenv.Decode(t, body, &out)
	if out.Topic.OwnerID != ada || out.Topic.Name != "releases" || out.Topic.Description != "new versions" || out.Topic.ID == 0 {
		t.Errorf("topic = %+v, want owner %d, name releases", out.Topic, ada)
	}
}

func TestCreateTopicRefusesBadRequestsAndChangesNothing(t *testing.T) {
	db := testenv.NewDB(t)
	_, token := testenv.User(t, db.Pool, "ada@example.com")
	expired, _, _ := auth.NewTokens(testenv.JWTKey, -time.Minute).Issue(1)
	forged, _, _ := auth.NewTokens([]byte("some-other-key-some-other-key-xx"), time.Hour).Issue(1)
	h := New(db.Pool, auth.NewTokens(testenv.JWTKey, time.Hour), nil, config.Limits{})
	if s, b := testenv.Call(t, h, "POST", `{"name":"releases"}`, token); s != 201 {
		t.Fatalf("first topic: %d %s", s, b)
	}
	before := testenv.Snapshot(t, db.Pool)
	cases := []struct {
		name, body, token string
		status            int
	}{
		{"no token", `{"name":"x"}`, "", 401},
		{"expired token", `{"name":"x"}`, expired, 401},
		{"forged token", `{"name":"x"}`, forged, 401},
		{"same name again, other case", `{"name":"RELEASES"}`, token, 409},
		{"blank name", `{"name":" "}`, token, 400},
		{"name too long", `{"name":"` + strings.Repeat("n", MaxName+1) + `"}`, token, 400},
		{"description too long", `{"name":"x","description":"` + strings.Repeat("d", MaxDescription+1) + `"}`, token, 400},
		{"malformed JSON", `{"name":`, token, 400},
	}
	for _, c := range cases {
		if status, body := testenv.Call(t, h, "POST", c.body, c.token); status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, status, body, c.status)
		}
	}
	if after := testenv.Snapshot(t, db.Pool); after != before {
		t.Error("refused topic creations changed the database")
	}
}
