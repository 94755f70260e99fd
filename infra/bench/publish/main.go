// Command publish benchmarks publishing: publishes per second and
// publish-to-commit latency through gateway-ws, with both participants on
// real PostgreSQL and Redis, beside a bound measured in the same run:
// pgbench running the SQL one publish needs, each database's share
// (directory.sql, persist.sql, counter.sql) on that database, at the same
// concurrency. It does so for each database layout asked for: all three
// in one database (one), three databases on the local server (three), the
// participants on servers of their own started for the run (servers,
// about 20 s more, so not in `make bench`). It prints a Markdown section.
//
//	go run ./infra/bench/publish -publishers 8 -duration 5s -pgbench 2s -rounds 2 -layouts one,three,servers
package main

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/infra/bench/machine"
	"tidings/infra/proc"
	"tidings/infra/stackrun"
	"tidings/lib/config"
)

// The pgbench scripts: each database's share of one publish.
//
//go:embed directory.sql persist.sql counter.sql
var scripts embed.FS

// options are the command's flags.
type options struct {
	publishers  []int // concurrencies, one row per layout each
	subscribers int
	duration    time.Duration // tidings, per row
	pgbench     time.Duration // pgbench, per row and database
	rounds      int           // each row's time split into rounds, tidings then pgbench in each
	layouts     []string
}

func main() {
	var o options
	publishers := flag.String("publishers", "8", "concurrent publishers (and pgbench clients), comma-separated for several rows")
	flag.IntVar(&o.subscribers, "subscribers", 10, "subscribers of every topic")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "how long tidings publishes, per row")
	flag.DurationVar(&o.pgbench, "pgbench", 2*time.Second, "how long pgbench runs on each database, per row")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds per row, each with its share of -duration and -pgbench (whole seconds)")
	layouts := flag.String("layouts", "one,three", "database layouts, comma-separated: "+layoutNames())
	flag.Parse()
	var err error
	if o.publishers, err = counts(*publishers); err == nil {
		o.layouts, err = pickLayouts(*layouts)
	}
	if err == nil && (o.rounds < 1 || o.pgbench%(time.Duration(o.rounds)*time.Second) != 0 || o.pgbench == 0) {
		err = errors.New("-pgbench must be a positive multiple of -rounds seconds")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "publish bench:", err)
		os.Exit(2)
	}
	var settings stackrun.Settings // the environment, read once: STACK_KEEP
	if err := config.Parse(&settings); err != nil {
		fmt.Fprintln(os.Stderr, "publish bench:", err)
		os.Exit(2)
	}
	if err := run(o, settings); err != nil {
		fmt.Fprintln(os.Stderr, "publish bench:", err)
		os.Exit(1)
	}
}

// layout is where the stack's three databases live.
type layout struct {
	name  string // in -layouts
	title string // in the table
	// participants places the participants' databases apart from the
	// directory's (stackrun.Stack.OwnParticipantDatabases); nil keeps them
	// in its database.
	participants *stackrun.Placement
}

var allLayouts = []layout{
	{"one", "one database (DATABASE_URL only)", nil},
	{"three", "three databases, one server", &stackrun.Placement{SharedServer: true}},
	// fsync on, as the shared server runs.
	{"servers", "three servers (persist, counter each its own, fsync on)", &stackrun.Placement{Durable: true}},
}

func layoutNames() string {
	var names []string
	for _, l := range allLayouts {
		names = append(names, l.name)
	}
	return strings.Join(names, ", ")
}

func pickLayouts(list string) ([]string, error) {
	var picked []string
	for _, name := range strings.Split(list, ",") {
		if !slices.ContainsFunc(allLayouts, func(l layout) bool { return l.name == name }) {
			return nil, fmt.Errorf("-layouts: %q is none of %s", name, layoutNames())
		}
		picked = append(picked, name)
	}
	return picked, nil
}

func counts(list string) ([]int, error) {
	var ns []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-publishers: %q is not a positive number", s)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// row is one layout at one concurrency.
type row struct {
	layout     string
	publishers int
	latencies  []time.Duration // of tidings's publishes that succeeded
	elapsed    time.Duration   // tidings's time publishing
	failures   int
	sides      [3]float64 // pgbench transactions/s, averaged over the rounds: directory, persist, counter
	timeWait   int        // sockets to or of the function host in TIME_WAIT at the row's end
}

// rate is tidings's publishes per second.
func (r row) rate() float64 { return float64(len(r.latencies)) / r.elapsed.Seconds() }

// percentile is the q-quantile of tidings's publish latencies.
func (r row) percentile(q float64) time.Duration {
	l := slices.Sorted(slices.Values(r.latencies))
	return l[int(q*float64(len(l)-1))]
}

// bound is the slowest database's rate: every publish needs a share of
// each, so tidings cannot publish faster than the slowest does its share
// with nothing else running. Their shares one after another (1 / the sum
// of 1/tps, what one pgbench script of all three measured before the
// participants had databases of their own) is no ceiling: the sides wait
// on fsync and row locks more than on the cores, and tidings overlaps
// them, preparing both participants at once.
func (r row) bound() float64 { return slices.Min(r.sides[:]) }

func run(o options, settings stackrun.Settings) error {
	ctx := context.Background()
	load, _ := os.ReadFile("/proc/loadavg")
	started := time.Now().UTC()
	// One build for every layout's stack, kept with the stacks' files
	// when they are.
	dir, err := os.MkdirTemp("", "tidings-bench-bin-")
	if err != nil {
		return err
	}
	if !settings.Keep {
		defer os.RemoveAll(dir)
	}
	bin, err := stackrun.Build(ctx, dir)
	if err != nil {
		return err
	}
	var rows []row
	for _, name := range o.layouts {
		i := slices.IndexFunc(allLayouts, func(l layout) bool { return l.name == name })
		r, err := measure(ctx, allLayouts[i], o, settings, bin)
		if err != nil {
			return fmt.Errorf("%s: %w", allLayouts[i].title, err)
		}
		rows = append(rows, r...)
	}

	fmt.Printf("## Publishing: two-phase commit through gateway-ws beside pgbench\n\n")
	fmt.Printf("%s, %s, load average before %s; `go run ./infra/bench/publish -publishers %s -subscribers %d -duration %v -pgbench %v -rounds %d -layouts %s`.\n\n",
		machine.Describe(), started.Format("2006-01-02 15:04 UTC"), strings.Join(strings.Fields(string(load))[:3], " "),
		joinInts(o.publishers), o.subscribers, o.duration, o.pgbench, o.rounds, strings.Join(o.layouts, ","))
	fmt.Println("| layout | publishers | publishes/s | p50 | p99 | failures | pgbench bound | ratio | pgbench tps: directory / persist / counter | publishes | host sockets in TIME_WAIT |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	met := true
	for _, r := range rows {
		ratio := r.rate() / r.bound()
		met = met && ratio >= 0.3
		fmt.Printf("| %s | %d | %.0f | %s | %s | %d | %.0f | %.2f | %.0f / %.0f / %.0f | %d | %d |\n", r.layout, r.publishers, r.rate(),
			ms(r.percentile(0.50)), ms(r.percentile(0.99)), r.failures, r.bound(), ratio, r.sides[0], r.sides[1], r.sides[2],
			len(r.latencies)+r.failures, r.timeWait)
	}
	verdict := "met"
	if !met {
		verdict = "NOT met"
	}
	fmt.Printf("\nBound: pgbench runs each database's share of one publish (directory.sql, persist.sql, counter.sql) "+
		"on that database alone, as many clients as publishers, in rounds alternating with tidings; "+
		"the bound is the slowest of the three, as every publish needs a share of each. "+
		"Ratio = publishes/s / bound; bar ≥ 0.30 on every row: %s. "+
		"Host sockets in TIME_WAIT: TCP connections to or of the function host's port closed within the last minute, counted "+
		"at the row's end (/proc/net/tcp): each publish makes about five function calls, and a pool that keeps its connections "+
		"leaves none.\n", verdict)
	return nil
}

// measure runs a stack on layout l and measures tidings and pgbench at
// each concurrency.
func measure(ctx context.Context, l layout, o options, settings stackrun.Settings, bin stackrun.Binaries) ([]row, error) {
	stack, err := bin.New(ctx, "bench", settings)
	if err != nil {
		return nil, err
	}
	defer stack.Close()
	if l.participants != nil {
		if _, _, err := stack.OwnParticipantDatabases(ctx, *l.participants); err != nil {
			return nil, err
		}
	}
	host, err := stack.StartHost(ctx)
	if err != nil {
		return nil, err
	}
	gw, err := stack.StartGateway(ctx, host, "HEALTH_INTERVAL=0")
	if err != nil {
		return nil, err
	}
	_, port, _ := strings.Cut(host.Addr, ":")
	hostPort, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("function host address %q: %w", host.Addr, err)
	}
	topics, err := setUp(ctx, host.Addr, slices.Max(o.publishers), o.subscribers)
	if err != nil {
		return nil, err
	}

	// pgbench's scripts and variables. Topics and their owners were made
	// one after another, so client i's is first + i, as for tidings.
	for i, t := range topics {
		if t.id != topics[0].id+int64(i) || t.owner != topics[0].owner+int64(i) {
			return nil, fmt.Errorf("topic and owner ids are not consecutive (%+v)", topics)
		}
	}
	rows, err := stack.Pool.Query(ctx, `SELECT user_id::text FROM subscriptions WHERE topic_id = $1`, topics[0].id)
	if err != nil {
		return nil, err
	}
	recipients, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("recipients: %w", err)
	}
	// The participants' scripts number their transactions from it.
	for _, pool := range []*pgxpool.Pool{stack.DBs.Persist, stack.DBs.Counter} {
		if _, err := pool.Exec(ctx, `CREATE SEQUENCE IF NOT EXISTS bench_tx`); err != nil {
			return nil, err
		}
	}
	sides := []struct{ script, url string }{
		{"directory.sql", stack.URLs.Directory}, {"persist.sql", stack.URLs.Persist}, {"counter.sql", stack.URLs.Counter},
	}
	for _, s := range sides {
		b, _ := scripts.ReadFile(s.script)
		if err := os.WriteFile(filepath.Join(stack.Dir, s.script), b, 0o644); err != nil {
			return nil, err
		}
	}
	vars := []string{"first_topic=" + strconv.FormatInt(topics[0].id, 10),
		"first_owner=" + strconv.FormatInt(topics[0].owner, 10), "recipients=" + strings.Join(recipients, ",")}

	// Rounds alternate tidings and pgbench, so that both meet the load
	// other work puts on the machine over the row's time alike.
	var out []row
	for _, n := range o.publishers {
		r := row{layout: l.title, publishers: n}
		for range o.rounds {
			publish(ctx, gw.Addr, topics[:n], o.duration/time.Duration(o.rounds), &r)
			for i, s := range sides {
				tps, err := pgbench(ctx, s.url, filepath.Join(stack.Dir, s.script), n, o.pgbench/time.Duration(o.rounds),
					append(vars, "ntopics="+strconv.Itoa(n)))
				if err != nil {
					return nil, fmt.Errorf("pgbench %s: %w", s.script, err)
				}
				r.sides[i] += tps / float64(o.rounds)
			}
		}
		if len(r.latencies) == 0 {
			return nil, fmt.Errorf("no publish succeeded (%d failures); logs in %s", r.failures, stack.Dir)
		}
		// A socket stays in TIME_WAIT for a minute after it closed, so
		// this counts the row's closed connections (those of earlier rows
		// too, if they ended less than a minute before).
		if r.timeWait, err = machine.TimeWait(hostPort); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// topic is a bench topic and its owner, who publishes on it.
type topic struct {
	id, owner int64
	token     string
}

// setUp registers the subscribers and the publishers, each publisher
// owning a topic every subscriber subscribes to.
func setUp(ctx context.Context, host string, publishers, subscribers int) ([]topic, error) {
	call := func(fn, token string, body, out any) error {
		return stackrun.Post(ctx, "http://"+host+"/function/"+fn, token, body, out)
	}
	register := func(email string) (int64, string, error) {
		var out struct {
			User  struct{ ID int64 }
			Token string
		}
		err := call("register", "", map[string]string{"email": email, "password": "bench-password", "name": "b"}, &out)
		return out.User.ID, out.Token, err
	}
	var subTokens []string
	for i := 0; i < subscribers; i++ {
		_, tok, err := register(fmt.Sprintf("sub%d@bench.test", i))
		if err != nil {
			return nil, err
		}
		subTokens = append(subTokens, tok)
	}
	var topics []topic
	for i := 0; i < publishers; i++ {
		owner, tok, err := register(fmt.Sprintf("pub%d@bench.test", i))
		if err != nil {
			return nil, err
		}
		var created struct{ Topic struct{ ID int64 } }
		if err := call("create-topic", tok, map[string]string{"name": "bench"}, &created); err != nil {
			return nil, err
		}
		for _, st := range subTokens {
			if err := call("subscribe", st, map[string]int64{"topic_id": created.Topic.ID}, nil); err != nil {
				return nil, err
			}
		}
		topics = append(topics, topic{created.Topic.ID, owner, tok})
	}
	return topics, nil
}

// publish has every topic's owner publish on it back to back through
// gateway-ws for d, and adds to r's latencies, time and failures.
func publish(ctx context.Context, gateway string, topics []topic, d time.Duration, r *row) {
	var mu sync.Mutex
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for _, t := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := fmt.Sprintf("http://%s/api/topics/%d/notifications", gateway, t.id)
			for time.Now().Before(deadline) {
				began := time.Now()
				err := stackrun.Post(ctx, url, t.token, map[string]string{"title": "bench", "body": "payload"}, nil)
				took := time.Since(began)
				mu.Lock()
				if err != nil {
					r.failures++
				} else {
					r.latencies = append(r.latencies, took)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.elapsed += time.Since(start)
}

// pgbench runs script on the database at url with n clients for d and
// returns its transactions (script runs) per second.
func pgbench(ctx context.Context, url, script string, n int, d time.Duration, vars []string) (float64, error) {
	bin, err := proc.PostgresBinary("pgbench")
	if err != nil {
		return 0, err
	}
	args := []string{"-n", "-c", strconv.Itoa(n), "-j", strconv.Itoa(min(n, runtime.NumCPU())),
		"-T", strconv.Itoa(int(d.Seconds())), "-f", script}
	for _, v := range vars {
		args = append(args, "-D", v)
	}
	out, err := exec.CommandContext(ctx, bin, append(args, url)...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v\n%s", err, out)
	}
	m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench printed no tps:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func joinInts(ns []int) string {
	var s []string
	for _, n := range ns {
		s = append(s, strconv.Itoa(n))
	}
	return strings.Join(s, ",")
}
