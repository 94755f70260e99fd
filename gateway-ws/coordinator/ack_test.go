package coordinator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	sendmail "tidings/functions/send-mail"
	"tidings/lib/logging"
	"tidings/lib/notification"
	"tidings/lib/redisx"
	"tidings/lib/store"
	"tidings/lib/testenv"
	"tidings/lib/twopc"
)

// ackUser is a user of the ack tests, with a token to call functions.
type ackUser struct {
	id    int64
	token string
}

// ackWorld is an owner with a topic, subscribers who receive the given
// number of notifications published through the coordinator, and their
// ids.
func (h *harness) ackWorld(subscribers, notifications int) (owner ackUser, subs []ackUser, ids []int64) {
	h.t.Helper()
	ctx := context.Background()
	dir := h.dbs.Directory.Pool
	owner.id, owner.token = testenv.User(h.t, dir, "ack-owner@example.com")
	topic, err := store.CreateTopic(ctx, dir, owner.id, "acks", "")
	if err != nil {
		h.t.Fatal(err)
	}
	for i := range subscribers {
		var u ackUser
		u.id, u.token = testenv.User(h.t, dir, fmt.Sprintf("ack-sub%d@example.com", i+1))
		if err := store.Subscribe(ctx, dir, topic.ID, u.id, false); err != nil {
			h.t.Fatal(err)
		}
		subs = append(subs, u)
	}
	for i := range notifications {
		res, err := h.coord.Publish(ctx, owner.id, topic.ID, notification.Message{Title: fmt.Sprintf("release %d", i+1)})
		if err != nil || res.Pending {
			h.t.Fatalf("publish %d: %+v %v", i+1, res, err)
		}
		ids = append(ids, res.NotificationID)
	}
	return owner, subs, ids
}

// ackRelay is a gateway replica's ack relay, running until the test ends,
// with the counter events it pushed.
type ackRelay struct {
	mu     sync.Mutex
	events map[string][]int64 // unread counts pushed, per user channel
}

// startRelay runs an ack relay on the harness's Redis and functions, as
// one more gateway replica would, and returns once it listens for
// wake-ups.
func (h *harness) startRelay() *ackRelay {
	h.t.Helper()
	r := &ackRelay{events: map[string][]int64{}}
	c := New(Config{
		Redis: h.rd.Client, Prefix: h.rd.Prefix, DB: h.dbs.Directory.Pool, Calls: h.inv,
		Log: logging.NewTo(io.Discard, "error", "test"), Settings: h.settings,
		Deliver: func(_ context.Context, b UserBatch) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if b.Event != CounterEventName || b.Notification != nil {
				h.t.Errorf("the relay pushed %q (notification %v)", b.Event, b.Notification)
				return nil
			}
			for user, n := range b.Unread {
				r.events[UserTopic(user)] = append(r.events[UserTopic(user)], b.Payload(n).(CounterEvent).Unread)
			}
			return nil
		},
	})
	before := h.wakeListeners()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.RunAckRelay(ctx)
	}()
	h.t.Cleanup(func() {
		cancel()
		<-done
		_ = c.Close()
	})
	testenv.Eventually(h.t, "the relay subscribes to the wake-up channel", 200, func() bool { return h.wakeListeners() > before })
	return r
}

// wakeListeners counts the subscribers of the ack wake-up channel.
func (h *harness) wakeListeners() int64 {
	n, err := redisx.Subscribers(context.Background(), h.rd.Client, twopc.AckWakeChannel(h.rd.Prefix))
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// pushed reports whether the relay pushed unread to user's channel.
func (r *ackRelay) pushed(user, unread int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.events[UserTopic(user)] {
		if n == unread {
			return true
		}
	}
	return false
}

// callAs calls a public function through the participant host as a
// client would, with token (none when empty); the answer's body decoded.
func (h *harness) callAs(token, method, function, body string) (int, map[string]any) {
	h.t.Helper()
	req, err := http.NewRequest(method, "http://"+h.host.addr+"/function/"+function, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, function, err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		h.t.Fatalf("%s %s answered %d with no JSON object: %v", method, function, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

func (h *harness) ack(u ackUser, notificationID int64) (int, map[string]any) {
	h.t.Helper()
	return h.callAs(u.token, http.MethodPost, "ack-notification", fmt.Sprintf(`{"notification_id":%d}`, notificationID))
}

func (h *harness) unread(u ackUser) (int, map[string]any) {
	h.t.Helper()
	return h.callAs(u.token, http.MethodGet, "get-counter", "")
}

// outboxDrained reports whether every recorded ack reached the counter.
func (h *harness) outboxDrained() bool {
	return h.count(h.dbs.Persist, `SELECT count(*) FROM ack_outbox`) == 0
}

// errorCode is the code of an answer in the JSON error shape, or "".
func errorCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func TestAckAnswersTheCountersCountOnceTheRelayAppliedIt(t *testing.T) {
	h := newHarness(t, nil, nil)
	_, subs, ids := h.ackWorld(2, 2)
	r := h.startRelay()
	if s, out := h.ack(subs[0], ids[0]); s != http.StatusOK || out["unread"] != 1.0 || out["pending"] != nil {
		t.Fatalf("ack with the relay running: %d %v, want 200 with the counter's unread 1", s, out)
	}
	if s, out := h.unread(subs[0]); s != http.StatusOK || out["unread"] != 1.0 {
		t.Errorf("get-counter after the ack: %d %v, want 1", s, out)
	}
	testenv.Eventually(t, "the relay forgets the applied ack", 200, h.outboxDrained)
	if s, out := h.ack(subs[0], ids[0]); s != http.StatusOK || out["unread"] != 1.0 {
		t.Errorf("the same ack again: %d %v, want 200 with unread still 1", s, out)
	}
	if s, out := h.unread(subs[0]); s != http.StatusOK || out["unread"] != 1.0 {
		t.Errorf("get-counter after acking twice: %d %v, want 1 (counted once)", s, out)
	}
	if s, out := h.unread(subs[1]); s != http.StatusOK || out["unread"] != 2.0 {
		t.Errorf("the other subscriber's count: %d %v, want 2", s, out)
	}
	testenv.Eventually(t, "the user's channel gets the new count", 200, func() bool { return r.pushed(subs[0].id, 1) })
	if n := h.count(h.dbs.Counter, `SELECT count(*) FROM applied_acks`); n != 1 {
		t.Errorf("%d acks applied at the counter, want 1", n)
	}
	h.settled()
}

func TestConcurrentAcksOfManyNotificationsByManyUsersAllLandOnce(t *testing.T) {
	h := newHarness(t, nil, nil)
	const users, notifications = 4, 6
	_, subs, ids := h.ackWorld(users, notifications)
	// Two gateway replicas relay the same outbox.
	relays := []*ackRelay{h.startRelay(), h.startRelay()}
	type answer struct {
		user   ackUser
		status int
		out    map[string]any
	}
	answers := make(chan answer, users*notifications*2)
	var wg sync.WaitGroup
	// Each user acks all but the first notification, so an ack applied
	// twice would show (the counter stops at 0).
	for _, u := range subs {
		for _, id := range ids[1:] {
			for range 2 { // every ack sent twice at once
				wg.Add(1)
				go func() {
					defer wg.Done()
					s, out := h.ack(u, id)
					answers <- answer{u, s, out}
				}()
			}
		}
	}
	wg.Wait()
	close(answers)
	for a := range answers {
		n, ok := a.out["unread"].(float64)
		if (a.status != http.StatusOK && a.status != http.StatusAccepted) || !ok || n < 1 || n >= notifications {
			t.Errorf("ack by user %d: %d %v, want 200 or 202 with unread 1 to %d", a.user.id, a.status, a.out, notifications-1)
		}
	}
	testenv.Eventually(t, "every ack reaches the counter", 400, h.outboxDrained)
	for _, u := range subs {
		if s, out := h.unread(u); s != http.StatusOK || out["unread"] != 1.0 {
			t.Errorf("user %d after acking all but one: %d %v, want 1", u.id, s, out)
		}
		testenv.Eventually(t, fmt.Sprintf("user %d's channel gets unread 1", u.id), 200, func() bool {
			return relays[0].pushed(u.id, 1) || relays[1].pushed(u.id, 1)
		})
	}
	if n := h.count(h.dbs.Counter, `SELECT count(*) FROM applied_acks`); n != users*(notifications-1) {
		t.Errorf("%d acks applied at the counter, want %d (one per user and notification acked)", n, users*(notifications-1))
	}
	h.settled()
}

func TestAckOfANotificationNotDeliveredOrMalformedChangesNothing(t *testing.T) {
	h := newHarness(t, nil, nil)
	owner, subs, ids := h.ackWorld(1, 1)
	h.startRelay()
	before := h.dbs.Snapshot(t)
	for _, c := range []struct {
		name   string
		token  string
		body   string
		status int
	}{
		{"the owner, who did not receive it", owner.token, fmt.Sprintf(`{"notification_id":%d}`, ids[0]), 404},
		{"a notification that does not exist", subs[0].token, fmt.Sprintf(`{"notification_id":%d}`, ids[0]+1000), 404},
		{"no token", "", fmt.Sprintf(`{"notification_id":%d}`, ids[0]), 401},
		{"no id", subs[0].token, `{}`, 400},
		{"a negative id", subs[0].token, `{"notification_id":-1}`, 400},
		{"a string id", subs[0].token, `{"notification_id":"1"}`, 400},
		{"an unknown field", subs[0].token, fmt.Sprintf(`{"notification_id":%d,"all":true}`, ids[0]), 400},
		{"trailing data", subs[0].token, fmt.Sprintf(`{"notification_id":%d}{}`, ids[0]), 400},
		{"not JSON", subs[0].token, `notification_id=1`, 400},
		{"an id past int64", subs[0].token, `{"notification_id":9223372036854775808}`, 400},
	} {
		s, out := h.callAs(c.token, http.MethodPost, "ack-notification", c.body)
		if s != c.status || errorCode(out) == "" {
			t.Errorf("%s: %d %v, want %d in the JSON error shape", c.name, s, out, c.status)
		}
	}
	if after := h.dbs.Snapshot(t); after != before {
		t.Errorf("refused acks changed a database")
	}
	if s, out := h.unread(subs[0]); s != http.StatusOK || out["unread"] != 1.0 {
		t.Errorf("get-counter after refused acks: %d %v, want 1", s, out)
	}
	h.settled()
}

// TestAckWhileThePersistDatabaseIsDown kills the persist participant's
// PostgreSQL server alone (SIGKILL) while acks are under way. Acks answer
// 200 or 202 before and a clear 503 after; none is half done (a delivery
// marked acked without its outbox row, or an outbox row the counter
// applies twice): once the server is back, every ack reaches the counter
// and the invariant holds.
func TestAckWhileThePersistDatabaseIsDown(t *testing.T) {
	dbs := testenv.NewDatabases(t)
	persist := testenv.StartPostgresServer(t)
	dbs.Persist = persist.DB()
	h := newHarnessWith(t, dbs, testenv.NewRedis(t), nil, nil, sendmail.Config{})
	_, subs, ids := h.ackWorld(3, 4)
	h.startRelay()
	if s, out := h.ack(subs[0], ids[0]); s != http.StatusOK {
		t.Fatalf("ack before the kill: %d %v, want 200", s, out)
	}

	// The kill lands among acks in flight.
	var wg sync.WaitGroup
	for _, u := range subs {
		for _, id := range ids[1:] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, out := h.ack(u, id)
				if s != http.StatusOK && s != http.StatusAccepted && !(s == http.StatusServiceUnavailable && errorCode(out) == "unavailable") {
					t.Errorf("ack by user %d while the persist database dies: %d %v, want 200, 202 or 503 unavailable", u.id, s, out)
				}
			}()
		}
	}
	persist.Kill()
	wg.Wait()
	if s, out := h.ack(subs[1], ids[0]); s != http.StatusServiceUnavailable || errorCode(out) != "unavailable" {
		t.Errorf("ack while the persist database is down: %d %v, want 503 unavailable", s, out)
	}

	persist.Start()
	testenv.Eventually(t, "the acks recorded before the kill reach the counter", 600, h.outboxDrained)
	if err := store.CheckInvariant(context.Background(), dbs.Persist.Pool, dbs.Counter.Pool); err != nil {
		t.Errorf("after the persist database came back: %v", err)
	}
	// Every ack the kill refused is sent again (as the client would).
	for _, u := range subs {
		for _, id := range ids {
			testenv.Eventually(t, fmt.Sprintf("user %d acks notification %d", u.id, id), 200, func() error {
				if s, out := h.ack(u, id); s != http.StatusOK && s != http.StatusAccepted {
					return fmt.Errorf("%d %v", s, out)
				}
				return nil
			})
		}
	}
	testenv.Eventually(t, "every ack reaches the counter", 600, h.outboxDrained)
	for _, u := range subs {
		if s, out := h.unread(u); s != http.StatusOK || out["unread"] != 0.0 {
			t.Errorf("user %d after acking everything: %d %v, want 0", u.id, s, out)
		}
	}
	h.settled()
}

// TestAckWhileTheCounterDatabaseIsDown kills the counter participant's
// PostgreSQL server alone (SIGKILL). Acks are still recorded (202
// pending, with the persist participant's count) and get-counter answers
// a clear 503; once the server is back the relay applies each ack once
// and pushes the new count to the user's channel.
func TestAckWhileTheCounterDatabaseIsDown(t *testing.T) {
	dbs := testenv.NewDatabases(t)
	counter := testenv.StartPostgresServer(t)
	dbs.Counter = counter.DB()
	h := newHarnessWith(t, dbs, testenv.NewRedis(t), nil, nil, sendmail.Config{})
	_, subs, ids := h.ackWorld(2, 3)
	r := h.startRelay()
	if s, out := h.ack(subs[1], ids[0]); s != http.StatusOK || out["unread"] != 2.0 {
		t.Fatalf("ack before the kill: %d %v, want 200 with unread 2", s, out)
	}

	counter.Kill()
	for i, id := range ids {
		want := float64(len(ids) - 1 - i) // the persist participant's count
		if s, out := h.ack(subs[0], id); s != http.StatusAccepted || out["pending"] != true || out["unread"] != want {
			t.Errorf("ack %d while the counter is down: %d %v, want 202 pending with unread %v", i+1, s, out, want)
		}
	}
	if s, out := h.unread(subs[0]); s != http.StatusServiceUnavailable || errorCode(out) != "unavailable" {
		t.Errorf("get-counter while the counter is down: %d %v, want 503 unavailable", s, out)
	}
	if h.outboxDrained() {
		t.Errorf("the outbox is empty while the counter is down: acks were lost")
	}

	counter.Start()
	testenv.Eventually(t, "the relay applies the acks recorded while the counter was down", 600, h.outboxDrained)
	testenv.Eventually(t, "get-counter answers again", 200, func() error {
		if s, out := h.unread(subs[0]); s != http.StatusOK || out["unread"] != 0.0 {
			return fmt.Errorf("%d %v, want 0", s, out)
		}
		return nil
	})
	if s, out := h.unread(subs[1]); s != http.StatusOK || out["unread"] != 2.0 {
		t.Errorf("the other subscriber's count: %d %v, want 2", s, out)
	}
	if n := h.count(h.dbs.Counter, `SELECT count(*) FROM applied_acks`); n != len(ids)+1 {
		t.Errorf("%d acks applied at the counter, want %d", n, len(ids)+1)
	}
	testenv.Eventually(t, "the user's channel gets the count the relay applied", 200, func() bool { return r.pushed(subs[0].id, 0) })
	h.settled()
}
