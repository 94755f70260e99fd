// Command publish benchmarks publishing: publishes per second and
// publish-to-commit latency through gateway-ws, with both participants on
// real PostgreSQL and Redis, beside a bound measured in the same run:
// pgbench running the same SQL writes one publish needs (publish.sql), at
// the same concurrency, on the same database. It prints a Markdown section.
//
//	go run ./infra/bench/publish -publishers 8 -duration 10s
package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"tidings/infra/bench/machine"
	"tidings/infra/proc"
	"tidings/infra/stackrun"
	"tidings/lib/config"
)

//go:embed publish.sql
var publishSQL string

func main() {
	publishers := flag.Int("publishers", 8, "concurrent publishers (and pgbench clients)")
	subscribers := flag.Int("subscribers", 10, "subscribers of every topic")
	duration := flag.Duration("duration", 10*time.Second, "how long each side runs")
	flag.Parse()
	var settings stackrun.Settings // the environment, read once: STACK_KEEP
	if err := config.Parse(&settings); err != nil {
		fmt.Fprintln(os.Stderr, "publish bench:", err)
		os.Exit(2)
	}
	if err := run(*publishers, *subscribers, *duration, settings); err != nil {
		fmt.Fprintln(os.Stderr, "publish bench:", err)
		os.Exit(1)
	}
}

func run(publishers, subscribers int, duration time.Duration, settings stackrun.Settings) error {
	ctx := context.Background()
	stack, err := stackrun.New(ctx, "bench", settings)
	if err != nil {
		return err
	}
	defer stack.Close()
	host, err := stack.StartHost(ctx)
	if err != nil {
		return err
	}
	gw, err := stack.StartGateway(ctx, host, "HEALTH_INTERVAL=0")
	if err != nil {
		return err
	}
	call := func(fn, token string, body, out any) error {
		return stackrun.Post(ctx, "http://"+host.Addr+"/function/"+fn, token, body, out)
	}
	register := func(email string) (string, error) {
		var out struct{ Token string }
		err := call("register", "", map[string]string{"email": email, "password": "bench-password", "name": "b"}, &out)
		return out.Token, err
	}
	var subTokens []string
	for i := 0; i < subscribers; i++ {
		tok, err := register(fmt.Sprintf("sub%d@bench.test", i))
		if err != nil {
			return err
		}
		subTokens = append(subTokens, tok)
	}
	type topic struct {
		id    int64
		token string
	}
	var topics []topic
	for i := 0; i < publishers; i++ {
		tok, err := register(fmt.Sprintf("pub%d@bench.test", i))
		if err != nil {
			return err
		}
		var created struct{ Topic struct{ ID int64 } }
		if err := call("create-topic", tok, map[string]string{"name": "bench"}, &created); err != nil {
			return err
		}
		for _, st := range subTokens {
			if err := call("subscribe", st, map[string]int64{"topic_id": created.Topic.ID}, nil); err != nil {
				return err
			}
		}
		topics = append(topics, topic{created.Topic.ID, tok})
	}

	// tidings: every publisher publishes back to back on its own topic.
	var mu sync.Mutex
	var latencies []time.Duration
	failures := 0
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	start := time.Now()
	for _, t := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := fmt.Sprintf("http://%s/api/topics/%d/notifications", gw.Addr, t.id)
			for time.Now().Before(deadline) {
				began := time.Now()
				err := stackrun.Post(ctx, url, t.token, map[string]string{"title": "bench", "body": "payload"}, nil)
				took := time.Since(began)
				mu.Lock()
				if err != nil {
					failures++
				} else {
					latencies = append(latencies, took)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(latencies) == 0 {
		return fmt.Errorf("no publish succeeded (%d failures); logs in %s", failures, stack.Dir)
	}
	ours := float64(len(latencies)) / elapsed.Seconds()

	// The bound: the same SQL through pgbench, same clients, same database.
	if _, err := stack.Pool.Exec(ctx, `CREATE SEQUENCE IF NOT EXISTS bench_tx`); err != nil {
		return err
	}
	script := filepath.Join(stack.Dir, "publish.sql")
	if err := os.WriteFile(script, []byte(publishSQL), 0o644); err != nil {
		return err
	}
	pgbench, err := proc.PostgresBinary("pgbench")
	if err != nil {
		return err
	}
	out, err := exec.Command(pgbench, "-n", "-c", strconv.Itoa(publishers), "-j", strconv.Itoa(min(publishers, runtime.NumCPU())),
		"-T", strconv.Itoa(int(duration.Seconds())), "-D", "ntopics="+strconv.Itoa(len(topics)),
		"-D", "first_topic="+strconv.FormatInt(topics[0].id, 10), "-f", script, stack.DBURL).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgbench: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`tps = ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("pgbench printed no tps:\n%s", out)
	}
	bound, _ := strconv.ParseFloat(string(m[1]), 64)
	lat := regexp.MustCompile(`latency average = ([0-9.]+) ms`).FindSubmatch(out)

	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	p := func(q float64) string {
		return fmt.Sprintf("%.1f ms", float64(latencies[int(q*float64(len(latencies)-1))].Microseconds())/1000)
	}
	ratio := ours / bound
	verdict := "met"
	if ratio < 0.3 {
		verdict = "NOT met"
	}
	fmt.Printf("## Publishing: two-phase commit through gateway-ws beside pgbench\n\n")
	fmt.Printf("%s, %s; `go run ./infra/bench/publish -publishers %d -subscribers %d -duration %v`.\n\n",
		machine.Describe(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), publishers, subscribers, duration)
	fmt.Println("| system | publishes/s | p50 | p99 | failures |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: |")
	fmt.Printf("| tidings (gateway-ws → notify-*, counter-* → PostgreSQL, Redis log) | %.0f | %s | %s | %d |\n",
		ours, p(0.50), p(0.99), failures)
	avg := "n/a"
	if lat != nil {
		avg = string(lat[1]) + " ms (avg)"
	}
	fmt.Printf("| pgbench, the same SQL writes (bound) | %.0f | %s | | |\n\n", bound, avg)
	fmt.Printf("Ratio %.2f of the bound; bar ≥ 0.30: %s.\n", ratio, verdict)
	return nil
}
