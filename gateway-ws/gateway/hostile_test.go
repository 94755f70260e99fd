package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"tidings/lib/testenv"
)

// TestHostileInputGetsA4xxInTheErrorShapeAndChangesNothing sends every
// public function (on the function host and through gateway-ws) and every
// gateway-ws endpoint the mistakes a hostile client makes. Each answer must
// be a 4xx in the JSON error shape, and the database and Redis keys must be
// what they were before it.
func TestHostileInputGetsA4xxInTheErrorShapeAndChangesNothing(t *testing.T) {
	e := startHostileEnv(t)
	gone, _ := testenv.User(t, e.db.Pool, "gone@example.test")
	goneTk := token(t, gone)
	if _, err := e.db.Pool.Exec(context.Background(), `DELETE FROM users WHERE id = $1`, gone); err != nil {
		t.Fatal(err)
	}
	// Warm what a valid call fills (cache entries) so that only a change
	// made by a refused request shows.
	if status, body := postJSON(t, e.gw.httpURL(fmt.Sprintf("/api/topics/%d/notifications", e.topic)), `{"title":"warm-up"}`,
		http.Header{"Authorization": {"Bearer " + e.ownerTk}}); status != http.StatusCreated {
		t.Fatalf("warm-up publish: %d %s", status, body)
	}
	// A join of a non-canonical topic id is refused with its reason. (The
	// socket also warms the cache entry of its user.)
	cl := dial(t, e.gw, e.owner)
	for _, topic := range []string{"topic:01", "topic:+1", fmt.Sprintf("topic:%d ", e.topic), "user:1e3"} {
		got := cl.join(topic)
		if !strings.Contains(got, `"status":"error"`) || !strings.Contains(got, `"reason":"invalid topic"`) {
			t.Errorf("join %q: %s, want an error reply with reason \"invalid topic\"", topic, got)
		}
	}
	cases := append(e.functionCases(goneTk), e.gatewayCases()...)
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-8s | %-55s | %s\n", "via", "case", "answer")
	for _, c := range cases {
		before := e.snapshot()
		a := e.do(c)
		code, ok := errorShape(a, c.status)
		after := e.snapshot()
		fmt.Fprintf(&table, "%-8s | %-55.55s | %d %s\n", c.base, c.name, a.status, code)
		if !ok {
			t.Errorf("%s via %s: %s (answer %d %.200s)", c.name, c.base, code, a.status, a.body)
		}
		if before != after {
			t.Errorf("%s via %s: the request changed the database or Redis:\nbefore:\n%s\nafter:\n%s", c.name, c.base, before, after)
		}
	}
	t.Logf("%d hostile requests:%s", len(cases), table.String())

}

// TestClientRefusalsNeverOpenTheBreakerButAFailingParticipantDoes sends 20
// client mistakes in a row to login and to publish through gateway-ws (its
// breaker opens after 5 failures): a valid login and publish by another
// user must succeed at once. Then the fault: the function host stops, and
// the participants' breaker must open.
func TestClientRefusalsNeverOpenTheBreakerButAFailingParticipantDoes(t *testing.T) {
	e := startHostileEnv(t)
	status, body := postJSON(t, e.gw.httpURL("/function/register"), `{"email":"victim@example.test","password":"victim password","name":"V"}`, nil)
	if status != http.StatusCreated {
		t.Fatalf("register the victim: %d %s", status, body)
	}
	var reg struct {
		User  struct{ ID int64 } `json:"user"`
		Token string             `json:"token"`
	}
	if err := json.Unmarshal([]byte(body), &reg); err != nil {
		t.Fatal(err)
	}
	status, body = postJSON(t, e.gw.httpURL("/function/create-topic"), `{"name":"victim's"}`, http.Header{"Authorization": {"Bearer " + reg.Token}})
	if status != http.StatusCreated {
		t.Fatalf("victim's topic: %d %s", status, body)
	}
	var created struct {
		Topic struct{ ID int64 } `json:"topic"`
	}
	_ = json.Unmarshal([]byte(body), &created)

	probes := []string{`{"email":"x\u0000@probe.test","password":"whatever"}`, "{\"email\":\"\xff@probe.test\",\"password\":\"p\"}",
		`{"email":"a@probe.test","password":"p"} junk`, `{"email":1}`}
	for i := range 20 {
		if status, body := postJSON(t, e.gw.httpURL("/function/login"), probes[i%len(probes)], nil); status != http.StatusBadRequest {
			t.Fatalf("hostile login #%d: %d %s, want 400", i+1, status, body)
		}
	}
	if status, body := postJSON(t, e.gw.httpURL("/function/login"), `{"email":"victim@example.test","password":"victim password"}`, nil); status != http.StatusOK {
		t.Errorf("the victim's login after 20 hostile ones: %d %s, want 200 (login's breaker must stay closed)", status, body)
	}

	hostile := http.Header{"Authorization": {"Bearer " + e.ownerTk}}
	titles := []string{`{"title":"x\u0000"}`, "{\"title\":\"\xff\"}", `{"title":"a"} junk`, `{"title":"a","body":"\u0000"}`}
	for i := range 20 {
		url := e.gw.httpURL(fmt.Sprintf("/api/topics/%d/notifications", e.topic))
		if status, body := postJSON(t, url, titles[i%len(titles)], hostile); status != http.StatusBadRequest {
			t.Fatalf("hostile publish #%d: %d %s, want 400", i+1, status, body)
		}
	}
	victimPublish := func() (int, string) {
		return postJSON(t, e.gw.httpURL(fmt.Sprintf("/api/topics/%d/notifications", created.Topic.ID)), `{"title":"still here"}`,
			http.Header{"Authorization": {"Bearer " + reg.Token}})
	}
	if status, body := victimPublish(); status != http.StatusCreated {
		t.Errorf("the victim's publish after 20 hostile ones: %d %s, want 201 (the participants' breakers must stay closed)", status, body)
	}
	for _, s := range e.gw.srv.calls.Statuses() {
		if s.Breaker != "closed" {
			t.Errorf("after client mistakes only, %s's breaker is %s", s.Name, s.Breaker)
		}
	}

	// The fault: the function host goes away; its connections are refused.
	e.host.Close()
	for range 6 {
		if status, body := victimPublish(); status < 500 {
			t.Fatalf("publish with the function host gone: %d %s, want a 5xx", status, body)
		}
	}
	open := map[string]bool{}
	for _, s := range e.gw.srv.calls.Statuses() {
		open[s.Name] = s.Breaker == "open"
	}
	if !open["notify-prepare"] || !open["counter-prepare"] {
		t.Errorf("after 6 publishes with the participants unreachable, breakers: %+v; want notify-prepare and counter-prepare open", e.gw.srv.calls.Statuses())
	}
}
