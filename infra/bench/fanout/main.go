// Command fanout benchmarks publishing to topics of growing size through
// the real stack (function host and gateway-ws as processes, the three
// databases apart on the local server): for each topic size N, the
// publish latency (until the coordinator's reply, everything committed),
// the time until a WebSocket client joined to the LAST subscriber's
// user:<id> channel receives the notification, and the largest function
// call body, beside a bound measured in the same run: PostgreSQL writing
// the same N delivery rows and N counter increments with the fastest SQL
// it has (a COPY of N deliveries beside one upsert of N counters), and
// the counter's own two phases alone (COPY of N pending increments, then
// their upsert). Then the Redis rows: the same measurements with two
// gateway-ws replicas, on a redis-server of the stack's own beside a
// throwaway Redis Cluster (three masters, one replica each). It prints a
// Markdown section for each.
//
//	go run ./infra/bench/fanout -sizes 10,1000,10000,100000 -redis-sizes 10000,100000
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/gateway-ws/gateway"
	"tidings/infra/bench/machine"
	"tidings/infra/stackrun"
	"tidings/lib/config"
	"tidings/lib/notification"
)

func main() {
	sizes := flag.String("sizes", "10,1000,10000,100000", "subscribers per topic, comma-separated, one row each; empty: none")
	redisSizes := flag.String("redis-sizes", "10000", "subscribers per topic of the Redis rows (two replicas on one Redis server, then on a Redis Cluster), comma-separated; empty: none")
	flag.Parse()
	ns, err := parseSizes("-sizes", *sizes)
	var rs []int
	if err == nil {
		rs, err = parseSizes("-redis-sizes", *redisSizes)
	}
	var settings stackrun.Settings // the environment, read once: STACK_KEEP
	if err == nil {
		err = config.Parse(&settings)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fanout bench:", err)
		os.Exit(2)
	}
	if err := run(ns, rs, *sizes, *redisSizes, settings); err != nil {
		fmt.Fprintln(os.Stderr, "fanout bench:", err)
		os.Exit(1)
	}
}

// parseSizes reads a comma-separated list of positive numbers; empty is
// none.
func parseSizes(name, list string) ([]int, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	var ns []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s: %q is not a positive number", name, s)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// publishes is how many publishes are timed at n subscribers: fewer on
// large topics, to keep the whole run near a minute.
func publishes(n int) int { return max(3, min(10, 300_000/n)) }

// row is one topic size's measurements.
type row struct {
	redis              string // which Redis the stack ran on (the Redis rows only)
	n                  int
	publish, last      []time.Duration
	largestCall        int64
	bound              []time.Duration // PostgreSQL's writes alone, per publish
	persistW, counterW []time.Duration // the bound's parts: persist COPY, counter upsert
	twoPC              []time.Duration // the counter's writes as its two phases make them
}

// redisKind is the Redis a stack of the Redis rows runs on.
type redisKind struct {
	name string
	// own points the stack at a Redis of its own before any node starts.
	own func(context.Context, *stackrun.Stack) error
}

// redisKinds are the Redis rows' two: one redis-server, and a cluster of
// three masters with one replica each, both started for the stack alone
// with the same persistence, so that neither shares the machine's Redis.
var redisKinds = []redisKind{
	{"one server", func(ctx context.Context, s *stackrun.Stack) error { _, err := s.OwnRedis(ctx); return err }},
	{"cluster, 3 masters", func(ctx context.Context, s *stackrun.Stack) error { _, err := s.OwnRedisCluster(ctx, 3, 1); return err }},
}

func run(sizes, redisSizes []int, sizesFlag, redisFlag string, settings stackrun.Settings) error {
	ctx := context.Background()
	load, _ := os.ReadFile("/proc/loadavg")
	started := time.Now().UTC()
	dir, err := os.MkdirTemp("", "tidings-fanout-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := stackrun.Build(ctx, dir)
	if err != nil {
		return err
	}
	var rows, redisRows []row
	if len(sizes) > 0 {
		if rows, err = measureStack(ctx, bin, settings, nil, 1, sizes); err != nil {
			return err
		}
	}
	// A Redis whose stack fails leaves a line saying why in its table and
	// the run's error, after the other's rows are printed.
	type failure struct {
		redis string
		err   error
	}
	var failed []failure
	if len(redisSizes) > 0 {
		for _, kind := range redisKinds {
			rs, err := measureStack(ctx, bin, settings, &kind, 2, redisSizes)
			if err != nil {
				failed = append(failed, failure{kind.name, err})
			}
			redisRows = append(redisRows, rs...)
		}
		// Each size's rows together, one server's first.
		slices.SortStableFunc(redisRows, func(a, b row) int { return cmp.Compare(a.n, b.n) })
	}

	const header = "| subscribers | publishes | publish p50 | publish p99 | last recipient p50 | last recipient p99 | largest call body | PostgreSQL bound p50 (deliveries / counters) | publish p50 / bound | counter's two phases alone p50 |"
	const align = "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	if len(rows) > 0 {
		fmt.Printf("## Fan-out by topic size: publish and last recipient beside PostgreSQL's bound\n\n")
		fmt.Printf("%s, %s, load average before %s; `go run ./infra/bench/fanout -sizes %s` (three databases on the local server).\n\n",
			machine.Describe(), started.Format("2006-01-02 15:04 UTC"), strings.Join(strings.Fields(string(load))[:3], " "), sizesFlag)
		fmt.Println(header)
		fmt.Println(align)
		for _, r := range rows {
			fmt.Printf("| %d | %s\n", r.n, r.cells())
		}
		fmt.Printf("\nPublish: POST to gateway-ws until its reply (both participants committed), one at a time, after one uncounted warm-up; " +
			"p99 of a few publishes is their largest. Last recipient: until a WebSocket client joined to user:<id> of the subscriber " +
			"added last (the largest id) receives the notification. Largest call body: the largest request gateway-ws sent the function host " +
			"during a publish, seen by a proxy in front of the host (one loopback hop added to every call). " +
			"Bound: PostgreSQL alone, on copies of the tables in the same databases, writing one publish's rows with the fastest SQL it has: " +
			"persist COPYs N deliveries and commits while counter adds 1 to N counters in one upsert (unnest) and commits; the bound is the slower side. " +
			"Counter's two phases alone: the counter's writes as tidings makes them, on the same copies: COPY of N pending increments " +
			"(prepare), then one upsert applying them (commit, as store.ApplyIncrements). " +
			"Issue 13's targets: 100,000 subscribers committed in ≤ 1.0 s, delivered to the last connected recipient in ≤ 1.5 s, " +
			"publish within 2× the bound.\n")
	}
	if len(redisRows)+len(failed) > 0 {
		if len(rows) > 0 {
			fmt.Println()
		}
		fmt.Printf("## Fan-out over two gateway-ws replicas: one Redis server beside a Redis Cluster\n\n")
		fmt.Printf("%s, %s, load average before %s; `go run ./infra/bench/fanout -redis-sizes %s` (three databases on the local server).\n\n",
			machine.Describe(), started.Format("2006-01-02 15:04 UTC"), strings.Join(strings.Fields(string(load))[:3], " "), redisFlag)
		fmt.Println("| redis " + header)
		fmt.Println("| --- " + align)
		for _, r := range redisRows {
			fmt.Printf("| %s | %d | %s\n", r.redis, r.n, r.cells())
		}
		for _, f := range failed {
			fmt.Printf("| %s | failed: %s |\n", f.redis, strings.NewReplacer("|", "\\|", "\n", " ").Replace(f.err.Error()))
		}
		fmt.Printf("\nThe columns are the table's above, with two gateway-ws replicas on one stack: publishes go to the first, " +
			"and the last recipient is joined to the second, so every notification it receives crossed Redis. " +
			"One server: a redis-server of the stack's own. Cluster: a throwaway Redis Cluster of three masters with one replica each " +
			"(six redis-servers on this machine), where fan-out rides sharded pub/sub (SPUBLISH/SSUBSCRIBE) and transaction records " +
			"are written with WAIT for one replica. Both keep an append-only file written on every command (appendfsync always).\n")
	}
	var errs []error
	for _, f := range failed {
		errs = append(errs, fmt.Errorf("redis (%s): %w", f.redis, f.err))
	}
	return errors.Join(errs...)
}

// cells are a row's columns after the subscribers.
func (r row) cells() string {
	b := pct(r.bound, 0.5)
	return fmt.Sprintf("%d | %s | %s | %s | %s | %d B | %s (%s / %s) | %.1f× | %s |", len(r.publish),
		ms(pct(r.publish, 0.5)), ms(pct(r.publish, 0.99)), ms(pct(r.last, 0.5)), ms(pct(r.last, 0.99)),
		r.largestCall, ms(b), ms(pct(r.persistW, 0.5)), ms(pct(r.counterW, 0.5)), float64(pct(r.publish, 0.5))/float64(b), ms(pct(r.twoPC, 0.5)))
}

// measureStack runs a stack of bin with the participants' databases on
// the shared server, on the Redis kind asks for (nil: the test Redis,
// testenv.RedisURL), with
// replicas gateway-ws processes, and measures a row for each size.
func measureStack(ctx context.Context, bin stackrun.Binaries, settings stackrun.Settings, kind *redisKind, replicas int, sizes []int) ([]row, error) {
	stack, err := bin.New(ctx, "fanout", settings)
	if err != nil {
		return nil, err
	}
	defer stack.Close()
	if kind != nil {
		if err := kind.own(ctx, stack); err != nil {
			return nil, err
		}
	}
	if _, _, err := stack.OwnParticipantDatabases(ctx, stackrun.Placement{SharedServer: true}); err != nil {
		return nil, err
	}
	host, err := stack.StartHost(ctx)
	if err != nil {
		return nil, err
	}
	// The gateway calls the functions through this proxy, which notes the
	// largest request body: the size of the largest call.
	var largest atomic.Int64
	proxy, err := bodyMeter(host.Addr, &largest)
	if err != nil {
		return nil, err
	}
	defer proxy.Close()
	var gws []*stackrun.Node
	for range replicas {
		gw, err := stack.StartGateway(ctx, &stackrun.Node{Addr: proxy.Addr().String()}, "HEALTH_INTERVAL=0")
		if err != nil {
			return nil, err
		}
		gws = append(gws, gw)
	}
	call := func(fn, token string, body, out any) error {
		return stackrun.Post(ctx, "http://"+host.Addr+"/function/"+fn, token, body, out)
	}
	var pub struct{ Token string }
	if err := call("register", "", map[string]string{"email": "publisher@bench.test", "password": "bench-password", "name": "p"}, &pub); err != nil {
		return nil, err
	}
	if err := boundTables(ctx, stack); err != nil {
		return nil, err
	}

	var rows []row
	for _, n := range sizes {
		r := row{n: n}
		if kind != nil {
			r.redis = kind.name
		}
		var created struct{ Topic struct{ ID int64 } }
		if err := call("create-topic", pub.Token, map[string]string{"name": fmt.Sprintf("fanout %d", n)}, &created); err != nil {
			return nil, err
		}
		topic := created.Topic.ID
		// n-1 subscribers by SQL, then the last, registered afterwards so
		// that its id is the largest, and its subscription the newest.
		if _, err := stack.Pool.Exec(ctx, `WITH fans AS (INSERT INTO users (email, name, password_hash)
			SELECT 'fan' || $2::int || '-' || g || '@bench.test', 'fan', 'x' FROM generate_series(1, $2::int - 1) g RETURNING id)
			INSERT INTO subscriptions (topic_id, user_id) SELECT $1, id FROM fans`, topic, n); err != nil {
			return nil, fmt.Errorf("subscribers: %w", err)
		}
		var lastUser struct {
			User  struct{ ID int64 }
			Token string
		}
		if err := call("register", "", map[string]string{"email": fmt.Sprintf("last%d@bench.test", n), "password": "bench-password", "name": "l"}, &lastUser); err != nil {
			return nil, err
		}
		if err := call("subscribe", lastUser.Token, map[string]int64{"topic_id": topic}, nil); err != nil {
			return nil, err
		}
		if _, err := stack.Pool.Exec(ctx, `ANALYZE subscriptions`); err != nil {
			return nil, err
		}
		// With replicas, the last recipient is on the last of them and
		// publishes go to the first: the notification crosses Redis.
		client, err := join(ctx, gws[len(gws)-1].Addr, lastUser.Token, lastUser.User.ID)
		if err != nil {
			return nil, err
		}
		target := fmt.Sprintf("http://%s/api/topics/%d/notifications", gws[0].Addr, topic)
		// The first publish warms up (connections, plans) and is not counted.
		for i := range publishes(n) + 1 {
			largest.Store(0)
			title := fmt.Sprintf("fanout %d #%d", n, i)
			began := time.Now()
			if err := post(ctx, target, pub.Token, map[string]string{"title": title, "body": "payload"}); err != nil {
				client.Close()
				return nil, fmt.Errorf("publish to %d: %w", n, err)
			}
			took := time.Since(began)
			arrived, err := client.await(title, 60*time.Second)
			if err != nil {
				client.Close()
				return nil, fmt.Errorf("%d subscribers: %w", n, err)
			}
			pw, cw, tw, err := bound(ctx, stack, n, i)
			if err != nil {
				client.Close()
				return nil, fmt.Errorf("bound at %d: %w", n, err)
			}
			if i == 0 {
				continue
			}
			r.publish, r.last = append(r.publish, took), append(r.last, arrived.Sub(began))
			r.largestCall = max(r.largestCall, largest.Load())
			r.persistW, r.counterW = append(r.persistW, pw), append(r.counterW, cw)
			r.bound = append(r.bound, max(pw, cw))
			r.twoPC = append(r.twoPC, tw)
		}
		client.Close()
		rows = append(rows, r)
		fmt.Fprintf(os.Stderr, "fanout: %d subscribers done (%d gateway-ws, Redis %s)\n", n, replicas, cmp.Or(r.redis, "shared"))
	}
	return rows, nil
}

// bodyMeter is a reverse proxy to host on a port of its own that stores
// the largest request body it forwards in largest.
func bodyMeter(host string, largest *atomic.Int64) (net.Listener, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: host})
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256}
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			for {
				seen := largest.Load()
				if int64(len(body)) <= seen || largest.CompareAndSwap(seen, int64(len(body))) {
					break
				}
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			rp.ServeHTTP(w, r)
		}))
	}()
	return l, nil
}

// post publishes through the gateway; a large topic may take longer than
// stackrun.Post's 10 s.
func post(ctx context.Context, target, token string, body any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%d %s", resp.StatusCode, raw)
	}
	return nil
}

// recipient is a WebSocket client joined to one user's channel.
type recipient struct {
	ws *websocket.Conn
	mu sync.Mutex
	// arrived holds when each notification title was read.
	arrived map[string]time.Time
	cond    *sync.Cond
	err     error
}

func join(ctx context.Context, addr, token string, user int64) (*recipient, error) {
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, fmt.Sprintf("ws://%s/socket/websocket?vsn=2.0.0&token=%s", addr, token), nil)
	if err != nil {
		return nil, err
	}
	j := gateway.Message{JoinRef: json.RawMessage(`"1"`), Ref: json.RawMessage(`"1"`), Topic: fmt.Sprintf("user:%d", user),
		Event: gateway.EventJoin, Payload: json.RawMessage(`{}`)}
	if err := ws.WriteMessage(websocket.TextMessage, j.Encode()); err != nil {
		ws.Close()
		return nil, err
	}
	_, data, err := ws.ReadMessage()
	if err != nil || !bytes.Contains(data, []byte(`"status":"ok"`)) {
		ws.Close()
		return nil, fmt.Errorf("join user:%d: %v %s", user, err, data)
	}
	c := &recipient{ws: ws, arrived: map[string]time.Time{}}
	c.cond = sync.NewCond(&c.mu)
	go c.read()
	return c, nil
}

func (c *recipient) read() {
	for {
		_, data, err := c.ws.ReadMessage()
		at := time.Now()
		c.mu.Lock()
		if err != nil {
			c.err = err
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		if m, err := gateway.Decode(data); err == nil && m.Event == notification.EventName {
			var n struct{ Title string }
			if json.Unmarshal(m.Payload, &n) == nil {
				c.arrived[n.Title] = at
				c.cond.Broadcast()
			}
		}
		c.mu.Unlock()
	}
}

// await waits until the notification titled title arrives and returns
// when it did.
func (c *recipient) await(title string, limit time.Duration) (time.Time, error) {
	timer := time.AfterFunc(limit, func() { c.ws.Close() })
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if at, ok := c.arrived[title]; ok {
			return at, nil
		}
		if c.err != nil {
			return time.Time{}, fmt.Errorf("the last recipient never received %q: %w", title, c.err)
		}
		c.cond.Wait()
	}
}

func (c *recipient) Close() { c.ws.Close() }

// boundTables makes copies of the tables a publish writes, without their
// foreign keys, beside the originals.
func boundTables(ctx context.Context, s *stackrun.Stack) error {
	for _, q := range []struct {
		pool *pgxpool.Pool
		sql  string
	}{
		{s.DBs.Persist, `CREATE TABLE bench_deliveries (LIKE deliveries INCLUDING ALL)`},
		{s.DBs.Counter, `CREATE TABLE bench_pending (LIKE pending_increments INCLUDING ALL)`},
		{s.DBs.Counter, `CREATE TABLE bench_counters (LIKE counters INCLUDING ALL)`},
	} {
		if _, err := q.pool.Exec(ctx, q.sql); err != nil {
			return err
		}
	}
	return nil
}

// bound writes publish i's rows for n recipients with PostgreSQL alone,
// each participant's side at once: persist COPYs the deliveries while
// counter adds one to each counter in one statement. It returns how long
// each side took, and then how long the counter's writes take as its two
// phases make them (pending increments COPYed, then applied).
func bound(ctx context.Context, s *stackrun.Stack, n, i int) (persist, counter, twoPC time.Duration, err error) {
	// Recipient ids of their own per size, so each size's counters are
	// new rows on its first publish and updates after, as in tidings.
	users := make([]int64, n)
	for u := range users {
		users[u] = int64(n)*1_000_000 + int64(u)
	}
	txID := fmt.Sprintf("bench-%d-%d", n, i)
	timed := func(pool *pgxpool.Pool, d *time.Duration, work func(pgx.Tx) error) error {
		began := time.Now()
		defer func() { *d = time.Since(began) }()
		return pgx.BeginFunc(ctx, pool, work)
	}
	var perr, cerr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		notification := int64(n)*1000 + int64(i)
		perr = timed(s.DBs.Persist, &persist, func(tx pgx.Tx) error {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"bench_deliveries"}, []string{"notification_id", "user_id"},
				pgx.CopyFromSlice(n, func(u int) ([]any, error) { return []any{notification, users[u]}, nil }))
			return err
		})
	}()
	cerr = timed(s.DBs.Counter, &counter, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO bench_counters (user_id, unread) SELECT unnest($1::bigint[]), 1
			ON CONFLICT (user_id) DO UPDATE SET unread = bench_counters.unread + 1`, users)
		return err
	})
	wg.Wait()
	if err := errors.Join(perr, cerr); err != nil {
		return 0, 0, 0, err
	}
	var prepare, commit time.Duration
	err = timed(s.DBs.Counter, &prepare, func(tx pgx.Tx) error {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"bench_pending"}, []string{"tx_id", "user_id"},
			pgx.CopyFromSlice(n, func(u int) ([]any, error) { return []any{txID, users[u]}, nil }))
		return err
	})
	if err == nil {
		err = timed(s.DBs.Counter, &commit, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `
				WITH applied AS (DELETE FROM bench_pending WHERE tx_id = $1 RETURNING user_id)
				INSERT INTO bench_counters (user_id, unread) SELECT user_id, 1 FROM applied
				ON CONFLICT (user_id) DO UPDATE SET unread = bench_counters.unread + 1`, txID)
			return err
		})
	}
	return persist, counter, prepare + commit, err
}

// pct is the q-quantile of ds (their largest for q near 1 and few ds).
func pct(ds []time.Duration, q float64) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	return s[int(q*float64(len(s)-1)+0.5)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
