package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tidings/functions"
	sendmail "tidings/functions/send-mail"
	"tidings/gateway-ws/invoke"
	"tidings/infra/fnhost"
	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/logging"
	"tidings/lib/notification"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

const internalKey = "coordinator-test-key"

// participantHost serves the real functions over HTTP on a fixed address,
// and can be stopped and started again like a participant process.
type participantHost struct {
	t    *testing.T
	addr string
	fns  map[string]fnhost.Function
	mu   sync.Mutex
	srv  *http.Server
	// serving is the host over fns, swapped whole when a test replaces a
	// function, so the listener stays: re-binding its port can fail
	// while another connection of the machine happens to use it.
	serving atomic.Pointer[http.Handler]
	// largestBody is the largest request body the host was sent, and
	// largestTx the largest but for counter-read's: the transaction's own
	// calls, without the live delivery's reads, which may run while the
	// publisher is being answered.
	largestBody, largestTx atomic.Int64
}

func (h *participantHost) start() {
	h.mu.Lock()
	defer h.mu.Unlock()
	ln, err := net.Listen("tcp", h.addr)
	if err != nil {
		h.t.Fatalf("restart participant host on %s: %v", h.addr, err)
	}
	h.addr = ln.Addr().String()
	h.load()
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		atLeast(&h.largestBody, int64(len(body)))
		if r.URL.Path != "/function/counter-read" {
			atLeast(&h.largestTx, int64(len(body)))
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		(*h.serving.Load()).ServeHTTP(w, r)
	})}
	go func() { _ = h.srv.Serve(ln) }()
}

// atLeast raises v to n if it is lower.
func atLeast(v *atomic.Int64, n int64) {
	for {
		if seen := v.Load(); n <= seen || v.CompareAndSwap(seen, n) {
			return
		}
	}
}

// load builds the host over fns as they are now.
func (h *participantHost) load() {
	host := fnhost.New(h.fns, 1<<20, logging.NewTo(io.Discard, "error", "test"))
	h.serving.Store(&host)
}

func (h *participantHost) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	_ = h.srv.Close()
}

type delivery struct {
	topic, event string
	payload      notification.Event
}

type harness struct {
	t      *testing.T
	dbs    *testenv.Databases
	rd     *testenv.Redis
	host   *participantHost
	inv    *invoke.Invoker
	coord  *Coordinator
	mu     sync.Mutex
	events []delivery
	coords []*Coordinator // every coordinator process of the test
	// settings are the timings of the coordinators newCoordinator makes.
	settings Settings
}

func newHarness(t *testing.T, settings map[string]invoke.Settings, crash func(Fault) bool) *harness {
	return newHarnessOn(t, testenv.NewRedis(t), settings, crash)
}

// newHarnessOn is newHarness on a Redis of the test's choosing.
func newHarnessOn(t *testing.T, rd *testenv.Redis, settings map[string]invoke.Settings, crash func(Fault) bool) *harness {
	return newHarnessMail(t, rd, settings, crash, sendmail.Config{})
}

// newHarnessMail is newHarnessOn whose send-mail speaks to the given mail
// server (the zero Config: send-mail's default).
func newHarnessMail(t *testing.T, rd *testenv.Redis, settings map[string]invoke.Settings, crash func(Fault) bool, mail sendmail.Config) *harness {
	return newHarnessWith(t, testenv.NewDatabases(t), rd, settings, crash, mail)
}

// newHarnessWith is newHarnessMail on databases of the test's choosing
// (a participant's on a server of its own, to kill it alone).
func newHarnessWith(t *testing.T, dbs *testenv.Databases, rd *testenv.Redis, settings map[string]invoke.Settings, crash func(Fault) bool, mail sendmail.Config) *harness {
	deps := &functions.Deps{Config: config.Config{InternalKey: internalKey, RedisPrefix: rd.Prefix}, DBs: dbs.DBs(), Redis: rd.Client, Tokens: auth.NewTokens(testenv.JWTKey, time.Hour), Mail: mail}
	fns, err := fnhost.Load("../../stack.yml", deps)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dbs: dbs, rd: rd, host: &participantHost{t: t, addr: "127.0.0.1:0", fns: fns}, settings: Settings{
		RetryBase: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		PhaseTwoTimeout: 20 * time.Second, StuckAfter: time.Nanosecond,
	}}
	h.host.start()
	t.Cleanup(h.host.stop)
	h.inv = invoke.New(invoke.Config{
		FaaSURL: "http://" + h.host.addr, InternalKey: internalKey,
		Default:     invoke.Settings{Timeout: 5 * time.Second, MaxInflight: 16, BreakerFailures: 3, BreakerOpenFor: 100 * time.Millisecond},
		PerFunction: settings,
		Log:         logging.NewTo(io.Discard, "error", "test"),
	})
	h.coord = h.newCoordinator(crash)
	return h
}

// newCoordinator is a coordinator process: a restart is a new one on the
// same Redis and functions, with none of the old one's memory.
func (h *harness) newCoordinator(crash func(Fault) bool) *Coordinator {
	c := New(Config{
		Redis: h.rd.Client, Prefix: h.rd.Prefix, DB: h.dbs.Directory.Pool, Calls: h.inv,
		Log:      logging.NewTo(io.Discard, "error", "test"),
		Settings: h.settings,
		Crash:    crash,
		Deliver: func(ctx context.Context, b UserBatch) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			for user, n := range b.Unread {
				h.events = append(h.events, delivery{UserTopic(user), b.Event, b.Payload(n).(notification.Event)})
			}
			return nil
		},
	})
	h.t.Cleanup(func() { _ = c.Close() })
	h.mu.Lock()
	h.coords = append(h.coords, c)
	h.mu.Unlock()
	return c
}

// delivered waits for the live deliveries every coordinator of the test
// has under way (they run after the publisher's answer) and returns the
// events delivered so far.
func (h *harness) delivered() []delivery {
	h.mu.Lock()
	coords := slices.Clone(h.coords)
	h.mu.Unlock()
	for _, c := range coords {
		c.delivering.Wait()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}

// world is an owner with a topic and two subscribers.
func (h *harness) world() (owner, topic int64, subs []int64) {
	ctx := context.Background()
	owner, _ = testenv.User(h.t, h.dbs.Directory.Pool, "owner@example.com")
	tp, err := store.CreateTopic(ctx, h.dbs.Directory.Pool, owner, "releases", "")
	if err != nil {
		h.t.Fatal(err)
	}
	for _, email := range []string{"s1@example.com", "s2@example.com"} {
		id, _ := testenv.User(h.t, h.dbs.Directory.Pool, email)
		if err := store.Subscribe(ctx, h.dbs.Directory.Pool, tp.ID, id, false); err != nil {
			h.t.Fatal(err)
		}
		subs = append(subs, id)
	}
	return owner, tp.ID, subs
}

// committedOnce checks that transaction txID ended committed, with the
// one notification of the test committed, and that all settled.
func (h *harness) committedOnce(txID string) {
	h.t.Helper()
	if s := h.txState(txID); s != Committed {
		h.t.Errorf("record state %q, want committed", s)
	}
	if n := h.count(h.dbs.Persist, `SELECT count(*) FROM notifications WHERE state = 'committed'`); n != 1 {
		h.t.Errorf("%d committed notifications, want 1", n)
	}
	h.settled()
}

// settled checks the invariant and that no record is left unfinished.
func (h *harness) settled() {
	h.t.Helper()
	ctx := context.Background()
	if err := store.CheckInvariant(ctx, h.dbs.Persist.Pool, h.dbs.Counter.Pool); err != nil {
		h.t.Error(err)
	}
	if open, err := h.unfinished(); err != nil || open != 0 {
		h.t.Errorf("%d transaction records left unfinished (%v)", open, err)
	}
}

// unfinished counts the unfinished records under the harness's prefix,
// through the test's client (the coordinator's own may be closed).
func (h *harness) unfinished() (int64, error) {
	r := &records{rdb: h.rd.Client, prefix: h.rd.Prefix, timeout: 10 * time.Second}
	return r.unfinished(context.Background())
}

// keys lists the keys matching pattern (on every master of a cluster).
func (h *harness) keys(pattern string) []string {
	h.t.Helper()
	keys, err := testenv.Keys(context.Background(), h.rd.Client, pattern)
	if err != nil {
		h.t.Fatal(err)
	}
	return keys
}

// barriers counts the barrier rows matching sql at both participants.
func (h *harness) barriers(sql string, args ...any) int {
	return h.count(h.dbs.Persist, sql, args...) + h.count(h.dbs.Counter, sql, args...)
}

// firstSubscriber is the lowest id of a subscriber.
func (h *harness) firstSubscriber() int64 {
	return int64(h.count(h.dbs.Directory, `SELECT min(user_id) FROM subscriptions`))
}

func (h *harness) count(db *testenv.DB, sql string, args ...any) int {
	var n int
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) txState(id string) string {
	s, _ := h.coord.records.state(context.Background(), id)
	return s
}

func TestPublishCommitsStoresCountsAndDelivers(t *testing.T) {
	h := newHarness(t, nil, nil)
	owner, topic, subs := h.world()
	res, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: " v1.0 ", Body: "out now"})
	if err != nil {
		t.Fatal(err)
	}
	if res.NotificationID == 0 || res.Recipients != 2 || res.Pending {
		t.Errorf("result %+v, want a notification for 2 recipients", res)
	}
	if s := h.txState(res.TxID); s != Committed {
		t.Errorf("record state %q, want committed", s)
	}
	events := h.delivered()
	h.settled()
	if len(events) != 2 {
		t.Fatalf("%d deliveries, want one per subscriber: %v", len(events), events)
	}
	for i, e := range events {
		if e.event != "notification" || e.payload.Unread != 1 || e.payload.Title != "v1.0" || e.payload.ID != res.NotificationID {
			t.Errorf("delivery %d = %+v", i, e)
		}
	}
	if events[0].topic != fmt.Sprintf("user:%d", subs[0]) && events[1].topic != fmt.Sprintf("user:%d", subs[0]) {
		t.Errorf("no delivery to user:%d: %v", subs[0], events)
	}
	if h.count(h.dbs.Persist, `SELECT count(*) FROM notifications WHERE state = 'committed'`) != 1 {
		t.Error("the notification is not committed")
	}
}

func TestPublishByANonOwnerIsRefusedAndNothingHappens(t *testing.T) {
	h := newHarness(t, nil, nil)
	_, topic, subs := h.world()
	before := h.dbs.Snapshot(t)
	_, err := h.coord.Publish(context.Background(), subs[0], topic, notification.Message{Title: "hijack"})
	var refusal *Refusal
	if !errors.As(err, &refusal) || refusal.Reason != "forbidden" {
		t.Fatalf("publish by a subscriber: %v, want a forbidden refusal", err)
	}
	for _, bad := range []notification.Message{{Title: ""}, {Title: string(make([]byte, 300))}} {
		if _, err := h.coord.Publish(context.Background(), subs[0], topic, bad); !errors.As(err, &refusal) {
			t.Errorf("publish of %q: %v, want a refusal", bad.Title, err)
		}
	}
	if after := h.dbs.Snapshot(t); after != before {
		t.Error("a refused publish changed the database")
	}
	if n := h.keys(h.rd.Prefix + "*"); len(n) != 0 {
		t.Errorf("a refused publish wrote transaction records: %v", n)
	}
}

// replace replaces a function of the running participant host.
func (h *harness) replace(name string, handler fn.Handler) {
	f := h.host.fns[name]
	f.Handler = handler
	h.host.mu.Lock()
	defer h.host.mu.Unlock()
	h.host.fns[name] = f
	h.host.load()
}

func TestPrepareFailureRollsEverythingBack(t *testing.T) {
	h := newHarness(t, nil, nil)
	owner, topic, _ := h.world()
	// Fault: counter-prepare fails (500) on every call.
	h.replace("counter-prepare", fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
		return fn.Response{}, errors.New("injected counter-prepare failure")
	}))
	_, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "doomed"})
	var aborted *AbortedError
	if !errors.As(err, &aborted) {
		t.Fatalf("publish with a failing counter-prepare: %v, want AbortedError", err)
	}
	if s := h.txState(aborted.TxID); s != Aborted {
		t.Errorf("record state %q, want aborted", s)
	}
	if n := h.count(h.dbs.Persist, `SELECT count(*) FROM notifications`); n != 0 {
		t.Errorf("%d notifications stored after an aborted publish", n)
	}
	if events := h.delivered(); len(events) != 0 {
		t.Errorf("an aborted publish was delivered: %v", events)
	}
	h.settled()
}

func TestPrepareTimeoutRollsBackAndFencesTheLatePrepare(t *testing.T) {
	h := newHarness(t, map[string]invoke.Settings{
		"counter-prepare": {Timeout: 50 * time.Millisecond, MaxInflight: 4, BreakerFailures: 10, BreakerOpenFor: time.Second},
	}, nil)
	owner, topic, _ := h.world()
	real := h.host.fns["counter-prepare"].Handler
	rolledBack := make(chan struct{})
	lateAnswer := make(chan int, 1)
	// Fault: counter-prepare stalls past its timeout, and reaches the
	// database only after the coordinator has rolled back.
	h.replace("counter-prepare", fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
		<-req.Context().Done()
		<-rolledBack
		req.WithContext(context.Background())
		resp, err := real.Handle(req)
		status := resp.StatusCode
		if e := fn.AsError(err); e != nil {
			status = e.Status
		}
		lateAnswer <- status
		return resp, err
	}))
	_, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "too slow"})
	var aborted *AbortedError
	if !errors.As(err, &aborted) {
		t.Fatalf("publish with a stalled counter-prepare: %v, want AbortedError", err)
	}
	close(rolledBack)
	if status := <-lateAnswer; status != 409 {
		t.Errorf("the late prepare answered %d, want 409 (fenced by the rollback)", status)
	}
	if n := h.count(h.dbs.Counter, `SELECT count(*) FROM pending_increments`) + h.count(h.dbs.Persist, `SELECT count(*) FROM notifications`); n != 0 {
		t.Errorf("%d rows left by an aborted publish", n)
	}
	h.settled()
}

func TestParticipantKilledBetweenPrepareAndCommitStillCommits(t *testing.T) {
	var h *harness
	restarted := make(chan struct{})
	// Fault: once both have voted, the participant host dies; it comes
	// back while the coordinator is retrying the commit.
	h = newHarness(t, nil, func(at Fault) bool {
		if at == AfterPrepare {
			h.host.stop()
			go func() {
				time.Sleep(200 * time.Millisecond)
				h.host.start()
				close(restarted)
			}()
		}
		return false
	})
	owner, topic, _ := h.world()
	res, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "survives"})
	if err != nil || res.Pending {
		t.Fatalf("publish across a participant restart: %+v %v, want committed", res, err)
	}
	<-restarted
	if s := h.txState(res.TxID); s != Committed {
		t.Errorf("record state %q, want committed", s)
	}
	h.settled()
	if n := h.count(h.dbs.Counter, `SELECT unread FROM counters WHERE user_id = $1`, h.firstSubscriber()); n != 1 {
		t.Errorf("unread %d, want 1", n)
	}
}

func TestCoordinatorCrashAfterDecisionIsCommittedByRecovery(t *testing.T) {
	h := newHarness(t, nil, func(at Fault) bool { return at == AfterDecision })
	owner, topic, _ := h.world()
	if _, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "decided"}); !errors.Is(err, ErrCrashed) {
		t.Fatalf("publish: %v, want the injected crash", err)
	}
	if n := h.count(h.dbs.Persist, `SELECT count(*) FROM notifications WHERE state = 'prepared'`); n != 1 {
		t.Fatalf("%d prepared notifications at the crash, want 1", n)
	}
	restarted := h.newCoordinator(nil)
	if n, err := restarted.Recover(context.Background()); err != nil || n != 1 {
		t.Fatalf("recovery finished %d (%v), want 1", n, err)
	}
	if n := h.count(h.dbs.Persist, `SELECT count(*) FROM notifications WHERE state = 'committed'`); n != 1 {
		t.Errorf("%d committed notifications after recovery, want 1", n)
	}
	h.settled()
	if events := h.delivered(); len(events) != 2 {
		t.Errorf("recovery delivered %d events, want one per subscriber", len(events))
	}
	stats, err := restarted.Stats(context.Background())
	if err != nil || stats != (Stats{Published: 1, Committed: 1, Recovered: 1}) {
		t.Errorf("stats %+v (%v), want 1 published, committed and recovered", stats, err)
	}
}

func TestCoordinatorCrashBeforeDecisionIsRolledBackByRecovery(t *testing.T) {
	h := newHarness(t, nil, func(at Fault) bool { return at == AfterPrepare })
	owner, topic, _ := h.world()
	if _, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "undecided"}); !errors.Is(err, ErrCrashed) {
		t.Fatalf("publish: %v, want the injected crash", err)
	}
	restarted := h.newCoordinator(nil)
	if n, err := restarted.Recover(context.Background()); err != nil || n != 1 {
		t.Fatalf("recovery finished %d (%v), want 1", n, err)
	}
	if n := h.count(h.dbs.Persist, `SELECT count(*) FROM notifications`); n != 0 {
		t.Errorf("%d notifications after recovery rolled back, want 0", n)
	}
	h.settled()
	if events := h.delivered(); len(events) != 0 {
		t.Errorf("a rolled-back publish was delivered: %v", events)
	}
}

func TestBreakerOpensOnADownParticipantAndClosesWhenItIsBack(t *testing.T) {
	h := newHarness(t, nil, nil)
	owner, topic, _ := h.world()
	h.host.stop() // fault: every participant unreachable
	ctx := context.Background()
	sawOpen := false
	for i := 0; i < 10 && !sawOpen; i++ { // threshold is 3 consecutive failures
		_, err := h.coord.Publish(ctx, owner, topic, notification.Message{Title: "down"})
		if err == nil {
			t.Fatal("publish succeeded with the participants down")
		}
		sawOpen = errors.Is(err, invoke.ErrOpen)
	}
	if !sawOpen {
		t.Fatal("the breaker never opened for a participant that is down")
	}
	h.host.start()
	var err error
	for i := 0; i < 50; i++ { // bounded: the breaker half-opens after 100ms
		if _, err = h.coord.Publish(ctx, owner, topic, notification.Message{Title: "back"}); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("publishes still fail after the participant is back: %v", err)
	}
	for _, s := range h.inv.Statuses() {
		if s.Breaker != "closed" && (s.Name == "notify-prepare" || s.Name == "counter-prepare") {
			t.Errorf("breaker of %s is %s, want closed", s.Name, s.Breaker)
		}
	}
	// The rollbacks of the failed publishes were left to recovery.
	if _, err := h.newCoordinator(nil).Recover(ctx); err != nil {
		t.Fatal(err)
	}
	h.settled()
}
