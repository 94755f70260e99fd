package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"tidings/lib/testenv"
)

// heldPrepare is a FaaS host running the real functions, whose
// notify-prepare waits until the test releases it.
type heldPrepare struct {
	url     string
	reached chan struct{} // one send per notify-prepare call that arrived
	release chan struct{} // closed by the test
}

func startHeldPrepare(t *testing.T, db *testenv.DB, rd *testenv.Redis) *heldPrepare {
	t.Helper()
	h := &heldPrepare{reached: make(chan struct{}, 16), release: make(chan struct{})}
	real := testFunctions(t, db.DBs(), rd)
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/function/notify-prepare" {
			h.reached <- struct{}{}
			select {
			case <-h.release:
			case <-r.Context().Done():
				return
			}
		}
		real.ServeHTTP(w, r)
	}))
	t.Cleanup(host.Close)
	t.Cleanup(func() {
		select {
		case <-h.release:
		default:
			close(h.release)
		}
	})
	h.url = host.URL
	return h
}

// wait receives from ch; the bound only keeps a broken gateway from
// hanging the test.
func wait(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: never happened", what)
	}
}

// replies reads frames until it has the replies of topic whose refs are
// wanted, and returns those replies' refs in the order they came with
// their frames; broadcasts in between are skipped.
func (c *client) replies(topic string, wanted int) (refs []string, frames []string) {
	c.t.Helper()
	for range wanted + 20 {
		raw, m := c.read()
		if m.Topic != topic || m.Event != EventReply {
			continue
		}
		var ref string
		_ = json.Unmarshal(m.Ref, &ref)
		refs, frames = append(refs, ref), append(frames, raw)
		if len(refs) == wanted {
			return refs, frames
		}
	}
	c.t.Fatalf("%d replies on %s never came (got %v)", wanted, topic, frames)
	return nil, nil
}

func TestHeartbeatsAndOtherChannelsAreAnsweredWhileAPublishIsPreparing(t *testing.T) {
	db, rd := testenv.NewDB(t), testenv.NewRedis(t)
	faas := startHeldPrepare(t, db, rd)
	cfg := testConfig(rd, db.URL)
	cfg.FaaSURL = faas.url
	g := startGateway(t, cfg)
	topicID, ownerID, _ := testenv.Topic(t, db.Pool, 1)
	topic := fmt.Sprintf("topic:%d", topicID)
	owner := dial(t, g, ownerID)
	jr := owner.mustJoin(topic)

	owner.send(jr, "p1", topic, "publish", map[string]string{"title": "first"})
	wait(t, "the first publish reaches notify-prepare", faas.reached)
	owner.send(jr, "p2", topic, "publish", map[string]string{"title": "second"})

	// The publish is held in its prepare; the socket answers meanwhile,
	// and each of these expects its answer as the very next frame.
	owner.heartbeat()
	userTopic := fmt.Sprintf("user:%d", ownerID)
	ujr := owner.mustJoin(userTopic)
	owner.send(ujr, "u1", userTopic, "hello", map[string]any{})
	owner.expect(fmt.Sprintf(`[%q,"u1",%q,"phx_reply",{"status":"error","response":{"reason":"unknown event"}}]`, ujr, userTopic))
	owner.heartbeat()

	close(faas.release)
	refs, frames := owner.replies(topic, 2)
	if refs[0] != "p1" || refs[1] != "p2" {
		t.Fatalf("publish replies came in the order %v, want p1 then p2", refs)
	}
	for _, f := range frames {
		var m struct{ Status string }
		decoded, _ := Decode([]byte(f))
		if err := json.Unmarshal(decoded.Payload, &m); err != nil || m.Status != StatusOK {
			t.Errorf("publish reply %s, want ok", f)
		}
	}
}

// blockingPublisher is a Publisher whose publishes wait for release (or
// for their context to end, which it reports on cancelled).
type blockingPublisher struct {
	started   chan string // the title of each publish as it starts
	release   chan struct{}
	cancelled chan struct{}
}

func newBlockingPublisher() *blockingPublisher {
	return &blockingPublisher{started: make(chan string, 64), release: make(chan struct{}), cancelled: make(chan struct{}, 64)}
}

func (p *blockingPublisher) Publish(ctx context.Context, _, _ int64, payload json.RawMessage) (any, error) {
	var msg struct{ Title string }
	_ = json.Unmarshal(payload, &msg)
	p.started <- msg.Title
	select {
	case <-p.release:
		return map[string]string{"title": msg.Title}, nil
	case <-ctx.Done():
		p.cancelled <- struct{}{}
		return nil, ctx.Err()
	}
}

func TestPushesPastTheChannelsLimitAreAnsweredBusy(t *testing.T) {
	db, cfg := newDBConfig(t)
	pub := newBlockingPublisher()
	cfg.Publisher = pub
	g := startGateway(t, cfg)
	_, _, topic, owner, jr := joinOwnTopic(t, g, db)
	for i := range maxPendingPushes {
		owner.send(jr, fmt.Sprintf("p%d", i), topic, "publish", map[string]string{"title": fmt.Sprint(i)})
	}
	owner.send(jr, "over", topic, "publish", map[string]string{"title": "over"})
	owner.expect(fmt.Sprintf(`[%q,"over",%q,"phx_reply",{"status":"error","response":{"reason":"busy"}}]`, jr, topic))
	close(pub.release)
	refs, _ := owner.replies(topic, maxPendingPushes)
	for i, ref := range refs {
		if ref != fmt.Sprintf("p%d", i) {
			t.Fatalf("replies in the order %v, want p0..p%d", refs, maxPendingPushes-1)
		}
	}
	// The queue drained: a push is taken again.
	owner.send(jr, "again", topic, "publish", map[string]string{"title": "again"})
	owner.expect(fmt.Sprintf(`[%q,"again",%q,"phx_reply",{"status":"ok","response":{"title":"again"}}]`, jr, topic))
}

func TestLeaveIsAnsweredAfterThePublishInFlight(t *testing.T) {
	db, cfg := newDBConfig(t)
	pub := newBlockingPublisher()
	cfg.Publisher = pub
	g := startGateway(t, cfg)
	_, _, topic, owner, jr := joinOwnTopic(t, g, db)
	owner.send(jr, "p1", topic, "publish", map[string]string{"title": "t"})
	if title := <-pub.started; title != "t" {
		t.Fatalf("publish of %q started, want t", title)
	}
	owner.send(jr, "bye", topic, EventLeave, map[string]any{})
	owner.heartbeat() // the leave is taken, and waits behind the publish
	if n := g.srv.Topics(); n != 0 {
		t.Errorf("after the leave the hub holds %d topics, want none: the topic's frames stop at once", n)
	}
	close(pub.release)
	owner.expect(fmt.Sprintf(`[%q,"p1",%q,"phx_reply",{"status":"ok","response":{"title":"t"}}]`, jr, topic))
	owner.expect(fmt.Sprintf(`[%q,"bye",%q,"phx_reply",{"status":"ok","response":{}}]`, jr, topic))
	owner.expect(fmt.Sprintf(`[%q,%q,%q,"phx_close",{}]`, jr, jr, topic))
}

func TestClosingTheSocketCancelsItsPublishes(t *testing.T) {
	db, cfg := newDBConfig(t)
	pub := newBlockingPublisher()
	cfg.Publisher = pub
	g := startGateway(t, cfg)
	_, _, topic, owner, jr := joinOwnTopic(t, g, db)
	owner.send(jr, "p1", topic, "publish", map[string]string{"title": "running"})
	owner.send(jr, "p2", topic, "publish", map[string]string{"title": "queued"})
	if title := <-pub.started; title != "running" {
		t.Fatalf("publish of %q started first, want running", title)
	}
	_ = owner.ws.Close()
	wait(t, "the running publish is cancelled", pub.cancelled)
	testenv.Eventually(t, "the socket is gone", 500, func() bool { return g.srv.Connections() == 0 })
	// The connection is forgotten only once its channels' goroutines have
	// ended, so the queued publish never started.
	select {
	case title := <-pub.started:
		t.Fatalf("publish %q started after the socket closed", title)
	default:
	}
}
