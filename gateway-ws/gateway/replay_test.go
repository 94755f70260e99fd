package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"tidings/lib/config"
	"tidings/lib/notification"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

// replayStack is a replica over the real functions (persist and counter
// in the test's database), with a topic of one subscriber.
type replayStack struct {
	t                     *testing.T
	g                     *testGateway
	db                    *testenv.DB
	topic, owner, sub     int64
	userTopic, ownerToken string
}

func newReplayStack(t *testing.T, change func(*Config)) *replayStack {
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	host := httptest.NewServer(testFunctions(t, db.DBs(), rd))
	t.Cleanup(host.Close)
	cfg := testConfig(rd, db.URL)
	cfg.FaaSURL = host.URL
	cfg.Limits.PublishesPerUser = config.Rate{}
	// Generous bounds: on a loaded machine a call past the defaults would
	// leave a publish's outcome unknown (503 pending, committed later by
	// recovery), which the exact counts of these tests cannot tell apart.
	cfg.Calls.Default.Timeout, cfg.JoinTimeout, cfg.PublishTimeout = 30*time.Second, 30*time.Second, 30*time.Second
	if change != nil {
		change(&cfg)
	}
	s := &replayStack{t: t, g: startGateway(t, cfg), db: db}
	var subs []int64
	s.topic, s.owner, subs = testenv.Topic(t, db.Pool, 1)
	s.sub, s.userTopic, s.ownerToken = subs[0], fmt.Sprintf("user:%d", subs[0]), token(t, s.owner)
	return s
}

// publish publishes one notification and returns its id (0 when it was
// not answered 201).
func (s *replayStack) publish(title string) int64 {
	status, body := postJSON(s.t, s.g.httpURL(fmt.Sprintf("/api/topics/%d/notifications", s.topic)), fmt.Sprintf(`{"title":%q}`, title),
		http.Header{"Authorization": {"Bearer " + s.ownerToken}})
	var out struct {
		NotificationID int64 `json:"notification_id"`
	}
	if status != http.StatusCreated || json.Unmarshal([]byte(body), &out) != nil {
		return 0
	}
	return out.NotificationID
}

// joinSince joins the user topic with payload and returns the reply.
func (c *client) joinWith(topic string, payload any) Message {
	c.t.Helper()
	ref := c.nextRef()
	c.send(ref, ref, topic, EventJoin, payload)
	_, m := c.read()
	return m
}

// notifications reads notification events until want ids came (or a read
// times out), returning them as they came.
func (c *client) notifications(want int) []notification.Event {
	c.t.Helper()
	var got []notification.Event
	for len(got) < want {
		_, m := c.read()
		if m.Event != notification.EventName {
			continue
		}
		var e notification.Event
		if err := json.Unmarshal(m.Payload, &e); err != nil {
			c.t.Fatal(err)
		}
		got = append(got, e)
	}
	return got
}

func eventIDs(events []notification.Event) []int64 {
	ids := make([]int64, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	return ids
}

// A subscriber that saw n1 rejoins with since n1 while publishes keep
// committing, from several publishers at once: it gets every notification
// after n1 exactly once, the replayed ones (those the reply counts) in id
// order first, each with the unread count it had when it committed, then
// the live ones; and a live one published after all still arrives once.
func TestRejoinWithSinceReplaysEachMissedNotificationOnceWhilePublishesCommit(t *testing.T) {
	s := newReplayStack(t, nil)
	first := dial(t, s.g, s.sub)
	first.mustJoin(s.userTopic)
	n1 := s.publish("n1")
	if got := first.notifications(1); got[0].ID != n1 {
		t.Fatalf("live n1: got %d, want %d", got[0].ID, n1)
	}
	_ = first.ws.Close()

	var published []int64
	for i := 2; i <= 20; i++ {
		published = append(published, s.publish(fmt.Sprintf("n%d", i)))
	}
	if slices.Contains(published, 0) {
		t.Fatalf("a publish before the rejoin was not answered 201: %v", published)
	}
	// Four publishers keep committing while the subscriber rejoins.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				id := s.publish(fmt.Sprintf("p%d-%d", p, i))
				if id == 0 {
					continue // not answered 201 (concurrent publishes to one user may abort): nothing stored
				}
				mu.Lock()
				published = append(published, id)
				mu.Unlock()
			}
		}()
	}
	again := dial(t, s.g, s.sub)
	reply := again.joinWith(s.userTopic, map[string]any{"since": n1})
	wg.Wait()
	var r struct {
		Status   string `json:"status"`
		Response struct {
			Replayed  int   `json:"replayed"`
			Truncated *bool `json:"truncated"`
		} `json:"response"`
	}
	if err := json.Unmarshal(reply.Payload, &r); err != nil || reply.Event != EventReply || r.Status != "ok" || r.Response.Truncated != nil {
		t.Fatalf("join reply %s %s, want ok {replayed: N}", reply.Event, reply.Payload)
	}
	if r.Response.Replayed < 19 {
		t.Errorf("replayed %d, want at least the 19 committed before the rejoin", r.Response.Replayed)
	}
	got := again.notifications(len(published))
	ids := eventIDs(got)
	want := slices.Clone(published)
	slices.Sort(want)
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	if !slices.Equal(sorted, want) {
		t.Fatalf("after the rejoin got ids %v, want each of %v once", ids, want)
	}
	if replayed := ids[:r.Response.Replayed]; !slices.IsSorted(replayed) {
		t.Errorf("replayed ids %v, want oldest first", replayed)
	}
	for i, e := range got[:19] {
		if e.ID != published[i] || e.Unread != int64(i+2) {
			t.Errorf("replayed event %d: id %d unread %d, want id %d unread %d (n1..n%d unacked)", i, e.ID, e.Unread, published[i], i+2, i+2)
		}
	}
	last := s.publish("live")
	if e := again.notifications(1)[0]; e.ID != last || e.Unread != int64(len(published)+2) {
		t.Errorf("live after the replay: id %d unread %d, want id %d unread %d", e.ID, e.Unread, last, len(published)+2)
	}
}

// Past REPLAY_MAX the reply says truncated, and only the oldest
// REPLAY_MAX notifications are replayed; live ones follow.
func TestReplayPastTheCapSaysTruncated(t *testing.T) {
	s := newReplayStack(t, func(c *Config) { c.ReplayMax = 3 })
	var ids []int64
	for i := range 5 {
		ids = append(ids, s.publish(fmt.Sprintf("n%d", i)))
	}
	c := dial(t, s.g, s.sub)
	reply := c.joinWith(s.userTopic, map[string]any{"since": 0})
	if string(reply.Payload) != `{"status":"ok","response":{"replayed":3,"truncated":true}}` {
		t.Fatalf("reply %s, want replayed 3, truncated", reply.Payload)
	}
	if got := eventIDs(c.notifications(3)); !slices.Equal(got, ids[:3]) {
		t.Errorf("replayed %v, want the oldest three %v", got, ids[:3])
	}
	// The live frames of the last publishes may still be on their way,
	// and come after the replay; none of the replayed comes again.
	live := s.publish("live")
	for {
		id := c.notifications(1)[0].ID
		if slices.Contains(ids[:3], id) {
			t.Fatalf("replayed %d came again", id)
		}
		if id == live {
			break
		}
	}
}

// A since that is not a non-negative integer is refused, and the channel
// is not joined: a push to it is answered "unmatched topic".
func TestJoinWithAnInvalidSinceIsRefused(t *testing.T) {
	s := newReplayStack(t, nil)
	c := dial(t, s.g, s.sub)
	for _, since := range []any{-1, "5", 1.5, true, map[string]any{}} {
		reply := c.joinWith(s.userTopic, map[string]any{"since": since})
		if string(reply.Payload) != `{"status":"error","response":{"reason":"invalid since"}}` {
			t.Errorf("since %v: reply %s, want the error invalid since", since, reply.Payload)
		}
	}
	ref := c.nextRef()
	c.send(ref, ref, s.userTopic, "ping", map[string]any{})
	if _, m := c.read(); string(m.Payload) != `{"status":"error","response":{"reason":"unmatched topic"}}` {
		t.Errorf("push after the refused joins: %s, want unmatched topic", m.Payload)
	}
}

// A gap fill (what the broker's resumption of a user topic starts) sends a
// joined socket the notifications committed that it never got live (the
// fault: committed straight into the persist database, no live delivery),
// in order, and none it got already.
func TestGapFillSendsWhatTheSocketMissedOnce(t *testing.T) {
	s := newReplayStack(t, nil)
	c := dial(t, s.g, s.sub)
	c.mustJoin(s.userTopic)
	seen := s.publish("seen live")
	if got := eventIDs(c.notifications(1)); got[0] != seen {
		t.Fatalf("live: %v, want %d", got, seen)
	}
	ctx := context.Background()
	var missed []int64
	for i := range 3 {
		tx := fmt.Sprintf("missed-%d", i)
		id, err := store.PrepareNotificationFor(ctx, s.db.Pool, tx, notification.Draft{
			TopicID: s.topic, SenderID: s.owner, Message: notification.Message{Title: tx},
		}, []int64{s.sub})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.CommitNotification(ctx, s.db.Pool, tx); err != nil {
			t.Fatal(err)
		}
		missed = append(missed, id)
	}
	s.g.srv.fillGaps(s.userTopic)
	if got := eventIDs(c.notifications(3)); !slices.Equal(got, missed) {
		t.Fatalf("gap fill sent %v, want %v", got, missed)
	}
	// A second fill finds nothing new; a live publish after it arrives
	// next, so nothing was sent twice in between.
	s.g.srv.fillGaps(s.userTopic)
	live := s.publish("after the fill")
	if got := eventIDs(c.notifications(1)); got[0] != live {
		t.Errorf("after a second fill got %v, want only the live %d", got, live)
	}
}
