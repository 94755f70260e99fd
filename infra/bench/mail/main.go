// Command mail benchmarks mail through the job queue: mails per second
// from enqueueing send-mail jobs to every job worked, with the queue's
// concurrency limit for send-mail shown, beside the same mails sent by
// calling send-mail directly at the same concurrency (no queue), in the
// same run. It prints a Markdown section:
//
//	go run ./infra/bench/mail -mails 400 -concurrency 1,4,16
//
// Everything is real and in one process: the jobs.Queue on the local Redis
// (its own key prefix), send-mail built by functions.New (catalogued in lib/catalog) on its own
// PostgreSQL database (idempotency claims included) behind the local FaaS
// host and invoke, and the SMTP peer is infra/mailsink over loopback. Each
// mail has its own idempotency key, so every one is really sent.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"tidings/functions"
	sendmail "tidings/functions/send-mail"
	"tidings/gateway-ws/invoke"
	"tidings/gateway-ws/jobs"
	"tidings/infra/bench/machine"
	"tidings/infra/fnhost"
	"tidings/infra/mailsink"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/logging"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

const internalKey = "bench-internal-key"

func main() {
	mails := flag.Int("mails", 400, "mails per run")
	levels := flag.String("concurrency", "1,4,16", "comma-separated concurrency limits for send-mail jobs")
	flag.Parse()
	var limits []int
	for _, s := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "mail bench: bad concurrency %q\n", s)
			os.Exit(2)
		}
		limits = append(limits, n)
	}
	if err := run(*mails, limits, *levels); err != nil {
		fmt.Fprintln(os.Stderr, "mail bench:", err)
		os.Exit(1)
	}
}

type row struct {
	path        string
	concurrency int
	mails       int
	elapsed     time.Duration
	p50, p95    time.Duration
	received    int
	failed      int
}

func run(mails int, limits []int, levels string) error {
	ctx := context.Background()
	env, err := setUp(ctx)
	if err != nil {
		return err
	}
	defer env.close()

	var rows []row
	for _, c := range limits {
		q, err := env.viaQueue(ctx, mails, c)
		if err != nil {
			return fmt.Errorf("queue at %d: %w", c, err)
		}
		d, err := env.direct(ctx, mails, c)
		if err != nil {
			return fmt.Errorf("direct at %d: %w", c, err)
		}
		rows = append(rows, q, d)
	}

	var redisVersion string
	if info, err := env.rdb.Info(ctx, "server").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				redisVersion = v
			}
		}
	}
	fmt.Printf("### Mail: send-mail jobs through the queue\n\n")
	fmt.Printf("%s; Redis %s, PostgreSQL (idempotency claims), SMTP peer infra/mailsink on loopback. "+
		"`go run ./infra/bench/mail -mails %d -concurrency %s`, %s. "+
		"Queue rows: enqueue all, then wait for every job worked; latency is enqueue to worked. "+
		"Direct rows: the same number of send-mail calls through invoke at the same concurrency, no queue.\n\n",
		machine.Describe(), redisVersion, mails, levels, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Println("| path | concurrency limit | mails | mails/s | p50 latency | p95 latency | received by SMTP | failed |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rows {
		fmt.Printf("| %s | %d | %d | %.0f | %s | %s | %d | %d |\n", r.path, r.concurrency, r.mails,
			float64(r.mails)/r.elapsed.Seconds(), ms(r.p50), ms(r.p95), r.received, r.failed)
	}
	return nil
}

// env is the stack under test.
type env struct {
	dbName  string
	pool    interface{ Close() }
	rdb     redis.UniversalClient
	prefix  string
	sink    *mailsink.Sink
	host    *httptest.Server
	invoker *invoke.Invoker
	key     int
}

func setUp(ctx context.Context) (*env, error) {
	e := &env{prefix: "tidings-bench-mail:" + rand.Text() + ":", dbName: "tidings_bench_mail_" + strings.ToLower(rand.Text())}
	admin, err := pgx.Connect(ctx, testenv.AdminURL())
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	_, err = admin.Exec(ctx, "CREATE DATABASE "+e.dbName)
	admin.Close(ctx)
	if err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	// A pool large enough that it is not what is measured.
	pool, err := store.Open(ctx, testenv.WithDatabase(testenv.AdminURL(), e.dbName)+"&pool_max_conns=40")
	if err != nil {
		e.close()
		return nil, err
	}
	e.pool = pool
	if err := store.Directory.Migrate(ctx, pool, nil); err != nil {
		e.close()
		return nil, err
	}
	rc, err := config.ParseRedis(testenv.RedisURL())
	if err != nil {
		e.close()
		return nil, err
	}
	e.rdb = rc.PoolSize(64).Client()
	if e.sink, err = mailsink.Start(mailsink.Options{Keep: 1 << 20}); err != nil {
		e.close()
		return nil, err
	}
	mail := sendmail.DefaultConfig() // send-mail speaks to the sink
	mail.Host, mail.Port, mail.From = e.sink.Host(), e.sink.Port(), "tidings <noreply@tidings.bench>"
	h, err := functions.New("send-mail", &functions.Deps{Config: config.Config{InternalKey: internalKey, SecretsDir: os.TempDir()}, DBs: store.Single(pool), Mail: mail})
	if err != nil {
		e.close()
		return nil, err
	}
	e.host = httptest.NewServer(fnhost.New(map[string]fnhost.Function{
		"send-mail": {Handler: h, Limits: fn.Limits{Timeout: 20 * time.Second, MaxInflight: 128}},
	}, 1<<20, logging.Discard()))
	e.invoker = invoke.New(invoke.Config{FaaSURL: e.host.URL, InternalKey: internalKey, Log: logging.Discard(),
		Default: invoke.Settings{Timeout: 20 * time.Second, MaxInflight: 128, BreakerFailures: 1000, BreakerOpenFor: time.Second}})
	return e, nil
}

func (e *env) close() {
	if e.host != nil {
		e.host.Close()
	}
	if e.sink != nil {
		_ = e.sink.Close()
	}
	if e.pool != nil {
		e.pool.Close()
	}
	testenv.DropDatabase(e.dbName)
	if e.rdb != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		iter := e.rdb.Scan(ctx, 0, e.prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			e.rdb.Del(ctx, iter.Val())
		}
		_ = e.rdb.Close()
	}
}

func (e *env) payload() json.RawMessage {
	e.key++
	b, _ := json.Marshal(map[string]string{"idempotency_key": fmt.Sprintf("bench-%s-%d", e.prefix[len(e.prefix)-9:len(e.prefix)-1], e.key),
		"to": "reader@example.test", "subject": "A new notification", "text": "Ann published \"Release 2\"."})
	return b
}

// viaQueue enqueues mails send-mail jobs on a fresh queue limited to
// concurrency, and times until every one finished.
func (e *env) viaQueue(ctx context.Context, mails, concurrency int) (row, error) {
	r := row{path: "job queue", concurrency: concurrency, mails: mails}
	var mu sync.Mutex
	enqueued := map[string]time.Time{}
	var latencies []time.Duration
	done := make(chan struct{})
	finished := 0
	notify := func(_ context.Context, _ int64, payload any) {
		ev := payload.(jobs.Event)
		if !ev.Status.Final() {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if ev.Status == jobs.Failed {
			r.failed++
		}
		if t, ok := enqueued[ev.ID]; ok {
			latencies = append(latencies, time.Since(t))
		}
		if finished++; finished == mails {
			close(done)
		}
	}
	q, err := jobs.New(e.rdb, e.invoker, nil, jobs.Config{
		Prefix: e.prefix + fmt.Sprintf("c%d:", concurrency), Concurrencies: map[string]int{"send-mail": concurrency},
		Timeout: 20 * time.Second, ClaimIdle: time.Minute, Notify: notify, Log: logging.Discard(),
	})
	if err != nil {
		return r, err
	}
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { _ = q.Run(runCtx); close(stopped) }()
	defer func() { stop(); <-stopped }()

	before := len(e.sink.Mails())
	start := time.Now()
	for range mails {
		mu.Lock() // so that a fast job's event finds its enqueue time
		id, err := q.Enqueue(ctx, 1, "send-mail", e.payload())
		if err == nil {
			enqueued[id] = time.Now()
		}
		mu.Unlock()
		if err != nil {
			return r, err
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		return r, fmt.Errorf("only %d of %d jobs finished", finished, mails)
	}
	r.elapsed = time.Since(start)
	r.received = len(e.sink.Mails()) - before
	r.p50, r.p95 = percentiles(latencies)
	return r, nil
}

// direct sends the same number of mails by calling send-mail through
// invoke from concurrency goroutines.
func (e *env) direct(ctx context.Context, mails, concurrency int) (row, error) {
	r := row{path: "direct call", concurrency: concurrency, mails: mails}
	payloads := make(chan json.RawMessage, mails)
	for range mails {
		payloads <- e.payload()
	}
	close(payloads)
	var mu sync.Mutex
	var latencies []time.Duration
	var wg sync.WaitGroup
	before := len(e.sink.Mails())
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range payloads {
				t := time.Now()
				_, err := e.invoker.Do(ctx, "send-mail", "POST", "", p)
				mu.Lock()
				latencies = append(latencies, time.Since(t))
				if err != nil {
					r.failed++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.elapsed = time.Since(start)
	r.received = len(e.sink.Mails()) - before
	r.p50, r.p95 = percentiles(latencies)
	return r, nil
}

func percentiles(d []time.Duration) (p50, p95 time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)*50/100], d[min(len(d)*95/100, len(d)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
