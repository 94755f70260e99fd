package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"tidings/lib/auth"
)

// The multi-replica run (-replicas N): o.conns sockets joined to one topic,
// spread over N gateway-ws processes sharing one database and one Redis
// prefix, dialed by -workers client processes (this binary re-executed with
// -ws-worker), so that no process holds more descriptors than the hard
// open-file limit allows. One broadcast goes to the first replica's
// POST /internal/broadcast; Redis pub/sub carries it to every replica, and
// each replica's hub writes it to its local sockets.
//
// A worker reads its workerConfig as one JSON line on stdin, connects and
// joins, and then speaks on stdout, one line each: "ready", "done <seq>"
// once every one of its sockets has broadcast seq, and, after its stdin
// closes, "result <json workerResult>".

type workerConfig struct {
	Gateways []string `json:"gateways"` // socket i dials Gateways[i%len]
	Users    []int64  `json:"users"`
	Secret   string   `json:"secret"`
	Topic    string   `json:"topic"`
	Rounds   int      `json:"rounds"`
	Burst    int      `json:"burst"`
	Dialers  int      `json:"dialers"`
}

type workerResult struct {
	Latencies []int64 `json:"latencies"` // nanoseconds, every delivery of the latency rounds
	LastRecv  int64   `json:"last_recv"` // unix nanoseconds
}

// runWorker is the client process.
func runWorker(ctx context.Context) error {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	var c workerConfig
	if err := json.Unmarshal(line, &c); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	if err := raiseFileLimit(len(c.Users)); err != nil {
		return err
	}
	t := &gatewayTarget{
		addrs:  c.Gateways,
		topic:  c.Topic,
		users:  c.Users,
		tokens: auth.NewTokens([]byte(c.Secret), time.Hour),
		dialer: websocket.Dialer{ReadBufferSize: 1024, WriteBufferSize: 1024, HandshakeTimeout: 60 * time.Second},
	}
	rec := newRecorder(len(c.Users), c.Rounds, c.Burst)
	if err := connectAll(ctx, t, options{conns: len(c.Users), dialers: c.Dialers}, rec); err != nil {
		return err
	}
	defer t.closeClients()
	fmt.Println("ready")
	for seq := range c.Rounds + c.Burst {
		select {
		case <-rec.done[seq]:
			fmt.Println("done", seq)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	_, _ = io.Copy(io.Discard, in) // the coordinator closes stdin once every worker is done
	res := workerResult{Latencies: rec.latencies[:min(int(rec.next.Load()), len(rec.latencies))], LastRecv: rec.lastRecv.Load()}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Printf("result %s\n", b)
	return nil
}

// worker is the coordinator's handle on one client process.
type worker struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // stdout, line by line; closed at EOF
	result workerResult
}

func startWorker(ctx context.Context, c workerConfig) (*worker, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-ws-worker")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &worker{cmd: cmd, stdin: stdin, lines: make(chan string, 1024)}
	go func() {
		defer close(w.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<30)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
	}()
	b, _ := json.Marshal(c)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("send config: %w", err)
	}
	return w, nil
}

// expect waits for the worker's next line to be want (a prefix for
// "result ") within limit.
func (w *worker) expect(ctx context.Context, want string, limit time.Duration) (string, error) {
	select {
	case l, ok := <-w.lines:
		if !ok {
			return "", fmt.Errorf("worker %d exited waiting for %q", w.cmd.Process.Pid, want)
		}
		if !strings.HasPrefix(l, want) {
			return "", fmt.Errorf("worker %d: got %q, want %q", w.cmd.Process.Pid, l, want)
		}
		return l, nil
	case <-time.After(limit):
		return "", fmt.Errorf("worker %d: no %q within %s", w.cmd.Process.Pid, want, limit)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// replicaResult is the multi-replica run's row.
type replicaResult struct {
	result
	replicas, workers int
	joinTime          time.Duration
	rssAfter          int64 // sum over replicas
	// Growth of the Go runtime's own gauges from the replicas' /metrics,
	// summed, from before the first socket to after the last join: where
	// the RSS growth goes.
	heapInuse, stackInuse, goroutines float64
}

// runtimeGauges are the /metrics gauges the breakdown reads.
var runtimeGauges = []string{"go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines"}

// scrapeRuntime sums runtimeGauges over the replicas' /metrics.
func scrapeRuntime(ctx context.Context, hc *http.Client, addrs []string) (map[string]float64, error) {
	sum := map[string]float64{}
	for _, a := range addrs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a+"/metrics", nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(string(body), "\n") {
			for _, g := range runtimeGauges {
				if v, ok := strings.CutPrefix(line, g+" "); ok {
					f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
					if err != nil {
						return nil, fmt.Errorf("%s of %s: %w", g, a, err)
					}
					sum[g] += f
				}
			}
		}
	}
	return sum, nil
}

func benchReplicas(ctx context.Context, o options) (replicaResult, error) {
	res := replicaResult{result: result{system: "gateway-ws", conns: o.conns}, replicas: o.replicas, workers: o.workers}
	limit, err := fileLimit()
	if err != nil {
		return res, err
	}
	perReplica, perWorker := (o.conns+o.replicas-1)/o.replicas, (o.conns+o.workers-1)/o.workers
	if need := uint64(max(perReplica, perWorker)) + 1024; need > limit {
		return res, fmt.Errorf("%d connections need %d descriptors in one process, over the hard limit %d: raise -replicas and -workers", o.conns, need, limit)
	}
	dbURL, topicID, users, dropDB, err := benchDatabase(ctx, o)
	if err != nil {
		return res, err
	}
	defer dropDB()
	bin, cleanup, err := gatewayBinary(o)
	if err != nil {
		return res, err
	}
	defer cleanup()

	secret, internalKey := rand.Text()+rand.Text(), rand.Text()
	prefix := "tidings-bench:" + rand.Text() + ":"
	var addrs []string
	var pids []int
	for range o.replicas {
		srv, addr, err := startGateway(ctx, o, bin, dbURL, prefix, secret, internalKey)
		if err != nil {
			return res, err
		}
		defer srv.Stop(syscall.SIGTERM)
		addrs = append(addrs, addr)
		pids = append(pids, srv.Cmd.Process.Pid)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	time.Sleep(500 * time.Millisecond)
	if res.rssBefore, err = rssSum(pids); err != nil {
		return res, err
	}
	before, err := scrapeRuntime(ctx, hc, addrs)
	if err != nil {
		return res, err
	}

	// Each worker dials every replica in turn, so each replica's listening
	// port sees conns/replicas sockets from 127.0.0.1: well inside the
	// ephemeral port range for one (source address, destination) pair.
	start := time.Now()
	var workers []*worker
	defer func() {
		for _, w := range workers {
			w.stdin.Close()
			_ = w.cmd.Process.Signal(syscall.SIGTERM)
			_ = w.cmd.Wait()
		}
	}()
	for i := range o.workers {
		lo, hi := i*perWorker, min((i+1)*perWorker, o.conns)
		if lo >= hi {
			break
		}
		w, err := startWorker(ctx, workerConfig{
			Gateways: addrs, Users: users[lo:hi], Secret: secret, Topic: fmt.Sprintf("topic:%d", topicID),
			Rounds: o.rounds, Burst: o.burst, Dialers: max(1, o.dialers/o.workers),
		})
		if err != nil {
			return res, err
		}
		workers = append(workers, w)
	}
	for _, w := range workers {
		if _, err := w.expect(ctx, "ready", 30*time.Minute); err != nil {
			return res, err
		}
	}
	res.joinTime = time.Since(start)
	fmt.Fprintf(os.Stderr, "gateway-ws ×%d: %d connections joined in %s\n", o.replicas, o.conns, res.joinTime.Round(time.Millisecond))
	time.Sleep(o.settle)
	if res.rssAfter, err = rssSum(pids); err != nil {
		return res, err
	}
	res.rssGrowth = res.rssAfter - res.rssBefore
	after, err := scrapeRuntime(ctx, hc, addrs)
	if err != nil {
		return res, err
	}
	res.heapInuse = after[runtimeGauges[0]] - before[runtimeGauges[0]]
	res.stackInuse = after[runtimeGauges[1]] - before[runtimeGauges[1]]
	res.goroutines = after[runtimeGauges[2]] - before[runtimeGauges[2]]

	t := &gatewayTarget{addrs: addrs, topic: fmt.Sprintf("topic:%d", topicID), internalKey: internalKey, http: hc}
	waitAll := func(seq int) error {
		for _, w := range workers {
			if _, err := w.expect(ctx, "done "+strconv.Itoa(seq), 2*time.Minute); err != nil {
				return fmt.Errorf("broadcast %d: %w", seq, err)
			}
		}
		return nil
	}
	burstStart, err := broadcast(ctx, t.publish, o, waitAll)
	if err != nil {
		return res, err
	}

	var lat []int64
	var lastRecv int64
	for _, w := range workers {
		w.stdin.Close()
		l, err := w.expect(ctx, "result ", 5*time.Minute)
		if err != nil {
			return res, err
		}
		if err := json.Unmarshal([]byte(strings.TrimPrefix(l, "result ")), &w.result); err != nil {
			return res, fmt.Errorf("worker result: %w", err)
		}
		lat = append(lat, w.result.Latencies...)
		lastRecv = max(lastRecv, w.result.LastRecv)
	}
	if len(lat) == 0 {
		return res, errors.New("no deliveries recorded")
	}
	if o.burst > 0 {
		res.perSecond = float64(o.burst*o.conns) / time.Duration(lastRecv-burstStart.UnixNano()).Seconds()
	}
	slices.Sort(lat)
	res.p50 = time.Duration(percentile(lat, 0.50))
	res.p99 = time.Duration(percentile(lat, 0.99))
	res.max = time.Duration(lat[len(lat)-1])
	return res, nil
}

func rssSum(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		n, err := rss(pid)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// replicaReport renders the multi-replica run's Markdown section.
func replicaReport(o options, r replicaResult) string {
	var b strings.Builder
	header(&b, o)
	fmt.Fprintf(&b, "- workload: %d WebSocket connections joined to one topic over %d gateway-ws replicas (one database, one Redis prefix) from %d client processes; %d latency rounds; a burst of %d broadcasts; payload ~%d B; each broadcast is one POST /internal/broadcast to the first replica, fanned out to every replica by Redis pub/sub\n\n",
		o.conns, r.replicas, r.workers, o.rounds, o.burst, o.payload)
	b.WriteString("| system | replicas | connections | joined in | p50 | p99 | max | deliveries/s | RSS of replicas (after join) | RSS growth | per idle connection |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	perConn := float64(r.rssGrowth) / float64(r.conns) / 1024
	fmt.Fprintf(&b, "| %s | %d | %d | %.1f s | %s | %s | %s | %.0f | %.1f MiB | %.1f MiB | %.1f KiB |\n",
		r.system, r.replicas, r.conns, r.joinTime.Seconds(), ms(r.p50), ms(r.p99), ms(r.max), r.perSecond,
		float64(r.rssAfter)/(1<<20), float64(r.rssGrowth)/(1<<20), perConn)
	n := float64(r.conns)
	fmt.Fprintf(&b, "\nWhere it goes (the replicas' /metrics, growth over the joins, per connection): heap in use %.1f KiB, goroutine stacks %.1f KiB, %.2f goroutines; the rest of the RSS growth is the heap's headroom and the runtime's.\n",
		r.heapInuse/n/1024, r.stackInuse/n/1024, r.goroutines/n)
	fmt.Fprintf(&b, "\nBars (issue 13): the run completes (met); gateway-ws per idle connection = %.1f KiB (at most 12: %s).\n", perConn, verdict(perConn <= 12))
	return b.String()
}
