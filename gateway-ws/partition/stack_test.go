package partition

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"tidings/functions"
	"tidings/gateway-ws/coordinator"
	"tidings/gateway-ws/gateway"
	"tidings/infra/fnhost"
	"tidings/lib/config"
	"tidings/lib/logging"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

// Which server a test puts behind the partition.
const (
	redisBehind    = "Redis"
	postgresBehind = "PostgreSQL"
)

// recoveryBound is how soon after the heal publishing and fresh joins must
// work again (issue 10, item 8).
const recoveryBound = 5 * time.Second

// world is a whole tidings stack, in this process, with one of its servers
// in a network namespace: the function host and a gateway-ws replica with
// production settings, an owner with a topic and
// a subscriber.
type world struct {
	t       *testing.T
	part    *testenv.Partition
	behind  string
	db      *testenv.DB
	gateway string // host:port
	log     string // where the stack logs

	owner, subscriber           int64
	ownerToken, subscriberToken string
	topic                       int64

	// atDecision, when set, is run by the coordinator just before it
	// records a decision (its AfterPrepare fault point), once.
	atDecision atomic.Pointer[func()]
}

func newWorld(t *testing.T, behind string) *world {
	w := &world{t: t, part: testenv.NewPartition(t), behind: behind}
	base := config.Config{
		TokenTTL: time.Hour, MaxBodyBytes: 64 << 10, LogLevel: "warn",
		JWTSecret: testenv.JWTKey, InternalKey: "partition-test-internal-key",
	}
	if behind == redisBehind {
		w.db = testenv.NewDB(t)
		base.RedisURL, base.RedisPrefix = w.part.StartRedis().URL(), "tidings-partition:"
	} else {
		w.db = w.part.StartPostgres()
		rds := testenv.NewRedis(t)
		base.RedisURL, base.RedisPrefix = rds.URL, rds.Prefix
	}
	base.DatabaseURL = w.db.URL

	logFile, err := os.CreateTemp("", "tidings-partition-*.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = logFile.Close() })
	w.log = logFile.Name()
	log := logging.NewTo(logFile, "warn", "partition-test")

	ctx, stop := context.WithCancel(context.Background())
	fs := functions.DefaultSettings()
	fs.Config = base
	deps, err := functions.Connect(ctx, fs, log)
	if err != nil {
		t.Fatal(err)
	}
	fns, err := fnhost.Load("../../stack.yml", deps)
	if err != nil {
		t.Fatal(err)
	}
	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := &http.Server{Handler: fnhost.New(fns, base.MaxBodyBytes, log)}
	go func() { _ = host.Serve(hostLn) }()

	cfg := gateway.DefaultConfig()
	cfg.Config = base
	cfg.FaaSURL, cfg.Logger = "http://"+hostLn.Addr().String(), log
	// Recovery keeps its production timings (RECOVERY_STUCK_AFTER 30s,
	// RECOVERY_INTERVAL 10s): a quicker one could finish a record before
	// a write the partition delayed lands, and hide what that write does.
	cfg.Crash = func(at coordinator.Fault) bool {
		if at == coordinator.AfterPrepare {
			if hook := w.atDecision.Swap(nil); hook != nil {
				(*hook)()
			}
		}
		return false
	}
	srv, err := gateway.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	gwLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, gwLn) }()
	w.gateway = gwLn.Addr().String()
	t.Cleanup(func() {
		stop()
		<-served
		_ = host.Close()
		deps.Close()
	})

	w.owner, w.ownerToken = testenv.User(t, w.db.Pool, "owner@partition.test")
	w.subscriber, w.subscriberToken = testenv.User(t, w.db.Pool, "subscriber@partition.test")
	tp, err := store.CreateTopic(ctx, w.db.Pool, w.owner, "partitioned", "")
	if err != nil {
		t.Fatal(err)
	}
	w.topic = tp.ID
	if err := store.Subscribe(ctx, w.db.Pool, w.topic, w.subscriber, false); err != nil {
		t.Fatal(err)
	}
	if !w.publish(10*time.Second) || !w.join(10*time.Second) {
		t.Fatalf("the stack does not publish or join before any fault (log %s)", w.log)
	}
	return w
}

// publish publishes one notification over HTTP as the topic's owner and
// reports whether it was committed.
func (w *world) publish(timeout time.Duration) bool { return w.publishID(timeout) != 0 }

// publishID is publish answering the notification's id, 0 when it was
// not answered 201.
func (w *world) publishID(timeout time.Duration) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
		fmt.Sprintf("http://%s/api/topics/%d/notifications", w.gateway, w.topic),
		strings.NewReader(`{"title":"across a partition","body":"still here"}`))
	req.Header.Set("Authorization", "Bearer "+w.ownerToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var out struct {
		NotificationID int64 `json:"notification_id"`
	}
	if resp.StatusCode != http.StatusCreated || json.NewDecoder(resp.Body).Decode(&out) != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return 0
	}
	return out.NotificationID
}

// publishing publishes one notification after another until stop is
// closed, pausing 100 ms between them, and calls done with each one's id
// (0: not answered 201).
func (w *world) publishing(stop <-chan struct{}, timeout time.Duration, done func(id int64)) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		done(w.publishID(timeout))
		time.Sleep(100 * time.Millisecond)
	}
}

// join opens a fresh socket as the subscriber, joins topic:<id> and
// reports whether the join was answered ok; the socket is closed after,
// so that the next join subscribes the topic anew.
func (w *world) join(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	dialer := websocket.Dialer{HandshakeTimeout: timeout}
	ws, _, err := dialer.Dial(fmt.Sprintf("ws://%s/socket/websocket?vsn=2.0.0&token=%s", w.gateway, w.subscriberToken), nil)
	if err != nil {
		return false
	}
	defer ws.Close()
	topic := fmt.Sprintf("topic:%d", w.topic)
	if err := ws.WriteJSON([]any{"1", "1", topic, "phx_join", map[string]any{}}); err != nil {
		return false
	}
	_ = ws.SetReadDeadline(deadline)
	for range 20 { // the reply may follow presence frames
		var frame [5]json.RawMessage
		if err := ws.ReadJSON(&frame); err != nil {
			return false
		}
		var ref, event string
		_ = json.Unmarshal(frame[1], &ref)
		_ = json.Unmarshal(frame[3], &event)
		if ref == "1" && event == "phx_reply" {
			var reply struct {
				Status string `json:"status"`
			}
			_ = json.Unmarshal(frame[4], &reply)
			return reply.Status == "ok"
		}
	}
	return false
}

// recovery measures, from heal, how long until a publish and a fresh join
// succeed again, each retried in a loop bounded by recoveryBound. A
// duration of -1 means it did not come back within the bound.
func (w *world) recovery(healed time.Time) (publish, join time.Duration) {
	retry := func(try func(time.Duration) bool) time.Duration {
		for time.Since(healed) < recoveryBound {
			if try(3 * time.Second) {
				return time.Since(healed)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return -1
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); publish = retry(w.publish) }()
	go func() { defer wg.Done(); join = retry(w.join) }()
	wg.Wait()
	return publish, join
}

// settle waits (bounded) until no transaction record is left unfinished,
// then checks that nothing is prepared or pending and that every unread
// counter matches the committed deliveries. It returns the records still
// open and the invariant's verdict.
func (w *world) settle(limit time.Duration) (open int64, invariant error) {
	deadline := time.Now().Add(limit)
	for {
		open = w.openTransactions()
		if open == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return open, store.CheckInvariant(ctx, w.db.Pool, w.db.Pool)
}

// openTransactions reads the unfinished records' count from the gateway's
// status API (-1 when it cannot say).
func (w *world) openTransactions() int64 {
	resp, err := http.Get("http://" + w.gateway + "/api/status")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var status struct {
		Transactions *struct {
			Open int64 `json:"open"`
		} `json:"transactions"`
	}
	if json.NewDecoder(resp.Body).Decode(&status) != nil || status.Transactions == nil {
		return -1
	}
	return status.Transactions.Open
}

// row is one line of the recovery table the tests log.
type row struct {
	scenario         string
	publish, join    time.Duration
	okDuring, failed int
	open             int64
	invariant        error
}

var (
	tableMu sync.Mutex
	table   []row
)

func record(r row) {
	tableMu.Lock()
	defer tableMu.Unlock()
	table = append(table, r)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if len(table) > 0 {
		fmt.Println("| scenario | publish back after heal | fresh join back after heal | publishes ok / failed meanwhile | records open after | invariant |")
		fmt.Println("| --- | --- | --- | --- | --- | --- |")
		show := func(d time.Duration) string {
			if d < 0 {
				return fmt.Sprintf("not within %v", recoveryBound)
			}
			return d.Round(10 * time.Millisecond).String()
		}
		for _, r := range table {
			inv := "holds"
			if r.invariant != nil {
				inv = r.invariant.Error()
			}
			fmt.Printf("| %s | %s | %s | %d / %d | %d | %s |\n", r.scenario, show(r.publish), show(r.join), r.okDuring, r.failed, r.open, inv)
		}
	}
	os.Exit(code)
}

// check fails t for whatever the scenario's row shows broken.
func (w *world) check(r row) {
	w.t.Helper()
	record(r)
	if r.publish < 0 {
		w.t.Errorf("%s: publishing was not back within %v of the heal (log %s)", r.scenario, recoveryBound, w.log)
	}
	if r.join < 0 {
		w.t.Errorf("%s: fresh joins were not back within %v of the heal (log %s)", r.scenario, recoveryBound, w.log)
	}
	if r.open != 0 {
		w.t.Errorf("%s: %d transaction records left unfinished (log %s)", r.scenario, r.open, w.log)
	}
	if r.invariant != nil {
		w.t.Errorf("%s: %v", r.scenario, r.invariant)
	}
	w.t.Logf("%s: publish back after %v, fresh join after %v, %d ok / %d failed meanwhile", r.scenario, r.publish, r.join, r.okDuring, r.failed)
}
