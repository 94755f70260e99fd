package listtopics

import (
	"context"
	"testing"
	"time"

	"tidings/lib/auth"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

func TestListTopicsShowsCountsAndTheCallersSubscriptions(t *testing.T) {
	db := testenv.NewDB(t)
	ctx := context.Background()
	ada, adaToken := testenv.User(t, db.Pool, "ada@example.com")
	bob, bobToken := testenv.User(t, db.Pool, "bob@example.com")
	releases, _ := store.CreateTopic(ctx, db.Pool, ada, "releases", "")
	outages, _ := store.CreateTopic(ctx, db.Pool, bob, "outages", "")
	for _, s := range [][2]int64{{releases.ID, ada}, {releases.ID, bob}, {outages.ID, bob}} {
		if err := store.Subscribe(ctx, db.Pool, s[0], s[1], false); err != nil {
			t.Fatal(err)
		}
	}
	h := New(db.Pool, auth.NewTokens(testenv.JWTKey, time.Hour))
	for _, c := range []struct {
		who   string
		token string
		want  map[int64][2]any // topic -> subscribers, subscribed
	}{
		{"ada", adaToken, map[int64][2]any{releases.ID: {int64(2), true}, outages.ID: {int64(1), false}}},
		{"bob", bobToken, map[int64][2]any{releases.ID: {int64(2), true}, outages.ID: {int64(1), true}}},
	} {
		status, body := testenv.Call(t, h, "GET", "", c.token)
		if status != 200 {
			t.Fatalf("%s: list-topics %d %s", c.who, status, body)
		}
		var out Response
		testenv.Decode(t, body, &out)
		if len(out.Topics) != 2 {
			t.Fatalf("%s: %d topics, want 2: %s", c.who, len(out.Topics), body)
		}
		for _, topic := range out.Topics {
			want := c.want[topic.ID]
			if topic.Subscribers != want[0] || topic.Subscribed != want[1] {
				t.Errorf("%s sees topic %d as %d subscribers, subscribed=%v; want %v", c.who, topic.ID, topic.Subscribers, topic.Subscribed, want)
			}
		}
	}
	if status, _ := testenv.Call(t, h, "GET", "", ""); status != 401 {
		t.Errorf("list-topics without a token: %d, want 401", status)
	}
}

func TestListTopicsAnswersAnEmptyListNotNull(t *testing.T) {
	db := testenv.NewDB(t)
	_, token := testenv.User(t, db.Pool, "ada@example.com")
	_, body := testenv.Call(t, New(db.Pool, auth.NewTokens(testenv.JWTKey, time.Hour)), "GET", "", token)
	if string(body) != `{"topics":[]}` {
		t.Errorf("empty listing = %s, want {\"topics\":[]}", body)
	}
}
