package functions_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"tidings/functions"
	"tidings/lib/auth"
	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/store"
	"tidings/lib/testenv"
	"tidings/lib/twopc"
)

const internalKey = "internal-key-for-tests"

// participants calls functions as gateway-ws does, with the internal key.
type participants struct {
	t    *testing.T
	dbs  *testenv.Databases
	deps *functions.Deps
}

func newParticipants(t *testing.T) *participants {
	dbs := testenv.NewDatabases(t)
	return &participants{t: t, dbs: dbs, deps: &functions.Deps{
		Config: config.Config{InternalKey: internalKey}, DBs: dbs.DBs(), Tokens: auth.NewTokens(testenv.JWTKey, time.Hour),
	}}
}

func (p *participants) call(function, method, query, body, key, token string) (int, map[string]any) {
	p.t.Helper()
	h, err := functions.New(function, p.deps)
	if err != nil {
		p.t.Fatal(err)
	}
	r := httptest.NewRequest(method, "/?"+query, strings.NewReader(body))
	if key != "" {
		r.Header.Set(auth.InternalKeyHeader, key)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	(&fn.Adapter{Handler: h}).ServeHTTP(w, r)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

func (p *participants) internal(function, body string) (int, map[string]any) {
	p.t.Helper()
	return p.call(function, "POST", "", body, internalKey, "")
}

func (p *participants) invariant() {
	p.t.Helper()
	if err := store.CheckInvariant(context.Background(), p.dbs.Persist.Pool, p.dbs.Counter.Pool); err != nil {
		p.t.Error(err)
	}
}

// world is an owner with a topic and two subscribers.
func (p *participants) world() (owner, topic int64, subs []int64, tokens []string) {
	ctx := context.Background()
	owner, _ = testenv.User(p.t, p.dbs.Directory.Pool, "owner@example.com")
	tp, err := store.CreateTopic(ctx, p.dbs.Directory.Pool, owner, "releases", "")
	if err != nil {
		p.t.Fatal(err)
	}
	for _, email := range []string{"s1@example.com", "s2@example.com"} {
		id, token := testenv.User(p.t, p.dbs.Directory.Pool, email)
		_ = store.Subscribe(ctx, p.dbs.Directory.Pool, tp.ID, id, false)
		subs, tokens = append(subs, id), append(tokens, token)
	}
	return owner, tp.ID, subs, tokens
}

// fix fixes the recipients of tx as the topic's subscribers, as the
// coordinator does before it prepares, and returns how many there are.
func (p *participants) fix(tx string, topic int64) int {
	p.t.Helper()
	n, err := store.FixRecipients(context.Background(), p.dbs.Directory.Pool, tx, topic)
	if err != nil {
		p.t.Fatal(err)
	}
	return n
}

func notifyBody(tx string, topic, sender int64, recipients int) string {
	return fmt.Sprintf(`{"tx_id":%q,"topic_id":%d,"sender_id":%d,"title":"v1.0","body":"out now","recipients_count":%d}`, tx, topic, sender, recipients)
}

func counterBody(tx string, recipients int) string {
	return fmt.Sprintf(`{"tx_id":%q,"recipients_count":%d}`, tx, recipients)
}

func TestCommittedNotificationIsCountedOnceAndAckedOnce(t *testing.T) {
	p := newParticipants(t)
	owner, topic, subs, tokens := p.world()
	n := p.fix("tx-1", topic)
	if s, out := p.internal("notify-prepare", notifyBody("tx-1", topic, owner, n)); s != 200 || out["notification_id"] == nil {
		t.Fatalf("notify-prepare: %d %v", s, out)
	}
	if s, out := p.internal("counter-prepare", counterBody("tx-1", n)); s != 200 {
		t.Fatalf("counter-prepare: %d %v", s, out)
	}
	// Prepared: invisible to readers and not counted.
	if _, out := p.call("list-notifications", "GET", "", "", "", tokens[0]); len(out["notifications"].([]any)) != 0 {
		t.Errorf("a prepared notification is visible: %v", out)
	}
	if _, out := p.call("get-counter", "GET", "", "", "", tokens[0]); out["unread"] != 0.0 {
		t.Errorf("a prepared increment is counted: %v", out)
	}
	for i := 0; i < 2; i++ { // duplicate commits count once
		if s, out := p.internal("counter-commit", `{"tx_id":"tx-1"}`); s != 200 {
			t.Fatalf("counter-commit #%d: %d %v", i+1, s, out)
		}
		if s, out := p.internal("notify-commit", `{"tx_id":"tx-1"}`); s != 200 {
			t.Fatalf("notify-commit #%d: %d %v", i+1, s, out)
		}
	}
	p.invariant()
	_, listing := p.call("list-notifications", "GET", "limit=10", "", "", tokens[0])
	list := listing["notifications"].([]any)
	if len(list) != 1 {
		t.Fatalf("subscriber sees %v, want the one notification", listing)
	}
	id := list[0].(map[string]any)["id"]
	if _, out := p.call("get-counter", "GET", "", "", "", tokens[0]); out["unread"] != 1.0 {
		t.Errorf("unread after commit: %v, want 1", out)
	}
	ack := fmt.Sprintf(`{"notification_id":%v}`, id)
	for i := 0; i < 2; i++ { // acking twice records once; no relay runs, so both are pending
		s, out := p.call("ack-notification", "POST", "", ack, "", tokens[0])
		if s != 202 || out["unread"] != 0.0 || out["pending"] != true {
			t.Errorf("ack #%d: %d %v, want 202 with unread 0 pending", i+1, s, out)
		}
	}
	if _, out := p.call("get-counter", "GET", "", "", "", tokens[0]); out["unread"] != 1.0 {
		t.Errorf("unread before the relay: %v, want 1 (the counter applies acks only when relayed)", out)
	}
	// Relay by hand as gateway-ws does, the counter's step twice (two
	// replicas relaying the same ack): it lowers the count once.
	s, pending := p.internal("notify-acks", `{"done":[]}`)
	acks, _ := pending["acks"].([]any)
	if s != 200 || len(acks) != 1 {
		t.Fatalf("notify-acks: %d %v, want the one ack", s, pending)
	}
	relayed, _ := json.Marshal(map[string]any{"acks": acks})
	for i := 0; i < 2; i++ {
		s, out := p.internal("counter-ack", string(relayed))
		if want := fmt.Sprintf("map[%d:0]", subs[0]); s != 200 || fmt.Sprint(out["unread"]) != want {
			t.Errorf("counter-ack #%d: %d %v, want unread %s", i+1, s, out, want)
		}
	}
	if _, out := p.call("get-counter", "GET", "", "", "", tokens[0]); out["unread"] != 0.0 {
		t.Errorf("unread after the relay: %v, want 0", out)
	}
	done := fmt.Sprintf(`{"done":[%v]}`, acks[0].(map[string]any)["id"])
	if s, out := p.internal("notify-acks", done); s != 200 || len(out["acks"].([]any)) != 0 {
		t.Errorf("notify-acks after the ack was applied: %d %v, want none left", s, out)
	}
	if s, out := p.call("ack-notification", "POST", "", ack, "", tokens[0]); s != 200 || out["unread"] != 0.0 {
		t.Errorf("ack after it was applied: %d %v, want 200 with unread 0", s, out)
	}
	if s, out := p.internal("counter-read", fmt.Sprintf(`{"users":[%d,%d]}`, subs[0], subs[1])); s != 200 ||
		fmt.Sprint(out["unread"]) != fmt.Sprintf("map[%d:0 %d:1]", subs[0], subs[1]) {
		t.Errorf("counter-read: %d %v, want %d unread 0 and %d unread 1", s, out, subs[0], subs[1])
	}
	if _, out := p.call("get-counter", "GET", "", "", "", tokens[1]); out["unread"] != 1.0 {
		t.Errorf("the other subscriber's count: %v, want 1", out)
	}
	if s, _ := p.call("ack-notification", "POST", "", fmt.Sprintf(`{"notification_id":%v}`, id), "", ""); s != 401 {
		t.Errorf("ack without a token: %d, want 401", s)
	}
	p.invariant()
}

func TestRollbackBeforePrepareRefusesThePrepare(t *testing.T) {
	p := newParticipants(t)
	owner, topic, _, _ := p.world()
	n := p.fix("tx-early", topic)
	for _, f := range []string{"notify-rollback", "counter-rollback"} {
		if s, out := p.internal(f, `{"tx_id":"tx-early"}`); s != 200 {
			t.Fatalf("%s before prepare: %d %v, want 200", f, s, out)
		}
	}
	if s, out := p.internal("notify-prepare", notifyBody("tx-early", topic, owner, n)); s != 409 {
		t.Errorf("notify-prepare after rollback: %d %v, want 409", s, out)
	}
	if s, out := p.internal("counter-prepare", counterBody("tx-early", n)); s != 409 {
		t.Errorf("counter-prepare after rollback: %d %v, want 409", s, out)
	}
	var notifications, increments int
	_ = p.dbs.Persist.Pool.QueryRow(context.Background(), `SELECT count(*) FROM notifications`).Scan(&notifications)
	_ = p.dbs.Counter.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pending_increments`).Scan(&increments)
	if n := notifications + increments; n != 0 {
		t.Errorf("%d notifications or increments stored after a fenced prepare", n)
	}
	p.invariant()
}

func TestRolledBackTransactionLeavesNothingAndCannotCommit(t *testing.T) {
	p := newParticipants(t)
	owner, topic, _, tokens := p.world()
	n := p.fix("tx-2", topic)
	p.internal("notify-prepare", notifyBody("tx-2", topic, owner, n))
	p.internal("counter-prepare", counterBody("tx-2", n))
	for i := 0; i < 2; i++ {
		for _, f := range []string{"notify-rollback", "counter-rollback"} {
			if s, out := p.internal(f, `{"tx_id":"tx-2"}`); s != 200 {
				t.Fatalf("%s #%d: %d %v", f, i+1, s, out)
			}
		}
	}
	for _, f := range []string{"notify-commit", "counter-commit"} {
		if s, out := p.internal(f, `{"tx_id":"tx-2"}`); s != 409 {
			t.Errorf("%s after rollback: %d %v, want 409", f, s, out)
		}
	}
	if _, out := p.call("get-counter", "GET", "", "", "", tokens[0]); out["unread"] != 0.0 {
		t.Errorf("unread after rollback: %v, want 0", out)
	}
	p.invariant()
}

func TestInDoubtListsOnlyTransactionsPreparedLongerThanAsked(t *testing.T) {
	p := newParticipants(t)
	owner, topic, _, _ := p.world()
	ctx := context.Background()
	for _, tx := range []string{"tx-old", "tx-new", "tx-done", "tx-undone"} {
		n := p.fix(tx, topic)
		p.internal("notify-prepare", notifyBody(tx, topic, owner, n))
		p.internal("counter-prepare", counterBody(tx, n))
	}
	p.internal("counter-commit", `{"tx_id":"tx-done"}`)
	p.internal("notify-commit", `{"tx_id":"tx-done"}`)
	p.internal("counter-rollback", `{"tx_id":"tx-undone"}`)
	p.internal("notify-rollback", `{"tx_id":"tx-undone"}`)
	// Everything but tx-new was prepared an hour ago.
	for _, db := range []*testenv.DB{p.dbs.Persist, p.dbs.Counter} {
		if _, err := db.Pool.Exec(ctx, `UPDATE tx_barriers SET updated_at = now() - interval '1 hour' WHERE tx_id <> 'tx-new'`); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"notify-indoubt", "counter-indoubt"} {
		s, out := p.internal(f, `{"older_than_ms":60000}`)
		if s != 200 || fmt.Sprint(out["tx_ids"]) != "[tx-old]" {
			t.Errorf("%s older than a minute: %d %v, want only tx-old", f, s, out)
		}
		if s, out := p.internal(f, `{"older_than_ms":0}`); s != 200 || len(out["tx_ids"].([]any)) != 2 {
			t.Errorf("%s older than now: %d %v, want tx-old and tx-new", f, s, out)
		}
		for _, bad := range []string{`{"older_than_ms":-1}`, `{"older_than_ms":1,"limit":100000}`, `{"older_than_ms":"1"}`, `{}{}`, ``} {
			if s, out := p.internal(f, bad); s != 400 || out["error"] == nil {
				t.Errorf("%s %s: %d %v, want 400 in the error shape", f, bad, s, out)
			}
		}
	}
}

func TestParticipantsRefuseBadPreparesAndChangeNothing(t *testing.T) {
	p := newParticipants(t)
	owner, topic, subs, _ := p.world()
	before := p.dbs.Snapshot(t)
	for _, c := range []struct {
		name, function, body string
		status               int
	}{
		{"publisher is not the owner", "notify-prepare", notifyBody("tx-3", topic, subs[0], 2), 403},
		{"missing topic", "notify-prepare", notifyBody("tx-3", 999, owner, 2), 404},
		{"blank title", "notify-prepare", `{"tx_id":"tx-3","topic_id":1,"sender_id":1,"title":" ","recipients_count":0}`, 400},
		{"recipient ids in the body", "notify-prepare", fmt.Sprintf(`{"tx_id":"tx-3","topic_id":%d,"sender_id":%d,"title":"t","recipients":[%d]}`, topic, owner, subs[0]), 400},
		{"bad tx id", "counter-prepare", counterBody("tx 3; drop table", 2), 400},
		{"negative recipient count", "counter-prepare", counterBody("tx-3", -4), 400},
		{"too many recipients", "counter-prepare", counterBody("tx-3", twopc.MaxRecipients+1), 400},
		{"recipient ids in the counter's body", "counter-prepare", fmt.Sprintf(`{"tx_id":"tx-3","recipients":[%d]}`, subs[0]), 400},
		{"no recipient set (persist)", "notify-prepare", notifyBody("tx-3", topic, owner, 2), 409},
		{"no recipient set (counter)", "counter-prepare", counterBody("tx-3", 2), 409},
		{"commit of an unknown tx", "notify-commit", `{"tx_id":"tx-unknown"}`, 409},
		{"malformed JSON", "counter-commit", `{"tx_id":`, 400},
		{"ack limit too large", "notify-acks", `{"done":[],"limit":1001}`, 400},
		{"negative ack limit", "notify-acks", `{"done":[],"limit":-1}`, 400},
		{"done names no ack", "notify-acks", `{"done":[0]}`, 400},
		{"done too long", "notify-acks", fmt.Sprintf(`{"done":%s}`, ids(1001)), 400},
		{"no acks", "counter-ack", `{"acks":[]}`, 400},
		{"ack without a user", "counter-ack", `{"acks":[{"id":1}]}`, 400},
		{"ack with a negative id", "counter-ack", fmt.Sprintf(`{"acks":[{"id":-1,"user_id":%d}]}`, subs[0]), 400},
		{"unknown ack field", "counter-ack", `{"acks":[{"id":1,"user_id":1,"extra":1}]}`, 400},
		{"no users", "counter-read", `{"users":[]}`, 400},
		{"user id zero", "counter-read", `{"users":[0]}`, 400},
		{"trailing data", "counter-read", `{"users":[1]}{}`, 400},
		{"more users than a batch", "counter-read", fmt.Sprintf(`{"users":%s}`, ids(twopc.MaxUnreadBatch+1)), 400},
		{"since without a user", "notify-since", `{"since":1}`, 400},
		{"negative since", "notify-since", fmt.Sprintf(`{"user_id":%d,"since":-1}`, subs[0]), 400},
		{"since limit too large", "notify-since", fmt.Sprintf(`{"user_id":%d,"limit":%d}`, subs[0], twopc.MaxSince+1), 400},
		{"since not a number", "notify-since", fmt.Sprintf(`{"user_id":%d,"since":"1"}`, subs[0]), 400},
		{"since with a bad time", "notify-since", fmt.Sprintf(`{"user_id":%d,"after":"yesterday"}`, subs[0]), 400},
		{"since of a user with none", "notify-since", fmt.Sprintf(`{"user_id":%d,"since":0}`, subs[0]), 200},
	} {
		if s, out := p.internal(c.function, c.body); s != c.status {
			t.Errorf("%s: %d %v, want %d", c.name, s, out, c.status)
		}
	}
	if after := p.dbs.Snapshot(t); after != before {
		t.Errorf("refused participant calls changed the database")
	}
}

// ids is a JSON array of the ids 1 to n.
func ids(n int) string {
	a := make([]int, n)
	for i := range a {
		a[i] = i + 1
	}
	b, _ := json.Marshal(a)
	return string(b)
}

func TestInternalFunctionsRefuseCallsWithoutTheKey(t *testing.T) {
	p := newParticipants(t)
	owner, topic, _, _ := p.world()
	n := p.fix("tx-x", topic)
	internal := 0
	for _, f := range catalog.All() {
		if !f.Internal {
			continue
		}
		name := f.Name
		internal++
		body := notifyBody("tx-x", topic, owner, n)
		for _, key := range []string{"", "wrong-key"} {
			if s, out := p.call(name, "POST", "", body, key, ""); s != 401 {
				t.Errorf("%s with key %q: %d %v, want 401", name, key, s, out)
			}
		}
	}
	if internal != 13 {
		t.Errorf("%d internal functions, want the eight notify-*/counter-* participants, notify-acks, counter-ack, counter-read, notify-since and send-mail", internal)
	}
	var persist, counter int
	_ = p.dbs.Persist.Pool.QueryRow(context.Background(), `SELECT count(*) FROM tx_barriers`).Scan(&persist)
	_ = p.dbs.Counter.Pool.QueryRow(context.Background(), `SELECT count(*) FROM tx_barriers`).Scan(&counter)
	if n := persist + counter; n != 0 {
		t.Errorf("calls without the key reached the barrier: %d rows", n)
	}
}

// Both participants prepare the recipients the coordinator fixed, not the
// subscriptions as they are when each prepare runs: a subscribe and an
// unsubscribe between the fix and the prepares change neither, so the
// two agree (and the invariant holds) however they interleave.
func TestParticipantsPrepareTheRecipientsFixedBeforeASubscribeOrUnsubscribe(t *testing.T) {
	p := newParticipants(t)
	owner, topic, subs, _ := p.world()
	ctx := context.Background()
	n := p.fix("tx-fixed", topic)
	late, _ := testenv.User(t, p.dbs.Directory.Pool, "late@example.com")
	if err := store.Subscribe(ctx, p.dbs.Directory.Pool, topic, late, false); err != nil {
		t.Fatal(err)
	}
	if err := store.Unsubscribe(ctx, p.dbs.Directory.Pool, topic, subs[0]); err != nil {
		t.Fatal(err)
	}
	if s, out := p.internal("counter-prepare", counterBody("tx-fixed", n)); s != 200 {
		t.Fatalf("counter-prepare: %d %v", s, out)
	}
	if s, out := p.internal("notify-prepare", notifyBody("tx-fixed", topic, owner, n)); s != 200 {
		t.Fatalf("notify-prepare: %d %v", s, out)
	}
	want := fmt.Sprint(subs)
	var delivered, counted []int64
	_ = p.dbs.Persist.Pool.QueryRow(ctx, `SELECT array_agg(user_id ORDER BY user_id) FROM deliveries`).Scan(&delivered)
	_ = p.dbs.Counter.Pool.QueryRow(ctx, `SELECT array_agg(user_id ORDER BY user_id) FROM pending_increments`).Scan(&counted)
	if fmt.Sprint(delivered) != want || fmt.Sprint(counted) != want {
		t.Errorf("deliveries to %v and increments for %v, want both the fixed recipients %v", delivered, counted, want)
	}
	// A count the set does not hold is a no, and prepares nothing.
	p.fix("tx-other", topic)
	if s, out := p.internal("counter-prepare", counterBody("tx-other", n+5)); s != 409 {
		t.Errorf("counter-prepare with a count the set does not hold: %d %v, want 409", s, out)
	}
	for _, f := range []string{"counter-commit", "notify-commit"} {
		p.internal(f, `{"tx_id":"tx-fixed"}`)
	}
	p.invariant()
}
