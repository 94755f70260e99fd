package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// result is one system's row.
type result struct {
	kind           string // kindGateway, kindNATS or kindCentrifuge
	system         string
	conns          int
	p50, p99, max  time.Duration
	perSecond      float64
	rssGrowth      int64
	rssBefore      int64
	rssAfterJoined int64
}

const (
	kindGateway    = "gateway"
	kindNATS       = "nats"
	kindCentrifuge = "centrifuge"
)

// target is one system under test: a server process, its clients, and a
// publisher.
type target interface {
	// pid is the server process whose RSS is measured.
	pid() int
	// connect opens client i and returns once it is subscribed; every
	// message it receives is handed to rec.
	connect(ctx context.Context, i int, rec *recorder) error
	// publish sends one broadcast to every client.
	publish(ctx context.Context, payload []byte) error
	// closeClients disconnects every client.
	closeClients()
}

// benchPayload is what each broadcast carries.
type benchPayload struct {
	Seq int    `json:"seq"`
	T   int64  `json:"t"` // unix nanoseconds just before publishing
	Pad string `json:"pad"`
}

// recorder collects deliveries from every client goroutine.
type recorder struct {
	conns     int
	latencies []int64 // nanoseconds, one slot per delivery of a latency round
	next      atomic.Int64
	counts    []atomic.Int64
	done      []chan struct{}
	lastRecv  atomic.Int64 // unix nanoseconds of the latest delivery
	rounds    int
}

func newRecorder(conns, rounds, burst int) *recorder {
	r := &recorder{
		conns:     conns,
		rounds:    rounds,
		latencies: make([]int64, conns*rounds),
		counts:    make([]atomic.Int64, rounds+burst),
		done:      make([]chan struct{}, rounds+burst),
	}
	for i := range r.done {
		r.done[i] = make(chan struct{})
	}
	return r
}

// deliver records one received payload.
func (r *recorder) deliver(payload []byte) {
	now := time.Now().UnixNano()
	var p benchPayload
	if err := json.Unmarshal(payload, &p); err != nil || p.Seq < 0 || p.Seq >= len(r.counts) {
		return
	}
	if p.Seq < r.rounds {
		if i := r.next.Add(1) - 1; int(i) < len(r.latencies) {
			r.latencies[i] = now - p.T
		}
	}
	for {
		last := r.lastRecv.Load()
		if now <= last || r.lastRecv.CompareAndSwap(last, now) {
			break
		}
	}
	if r.counts[p.Seq].Add(1) == int64(r.conns) {
		close(r.done[p.Seq])
	}
}

// broadcast publishes o.rounds broadcasts one at a time, waiting for each
// to reach every client, then o.burst back to back, waited for together;
// it returns when the burst began.
func broadcast(ctx context.Context, publish func(context.Context, []byte) error, o options, wait func(seq int) error) (time.Time, error) {
	for seq := range o.rounds {
		if err := publish(ctx, makePayload(seq, o.payload)); err != nil {
			return time.Time{}, err
		}
		if err := wait(seq); err != nil {
			return time.Time{}, err
		}
	}
	burstStart := time.Now()
	for i := range o.burst {
		if err := publish(ctx, makePayload(o.rounds+i, o.payload)); err != nil {
			return time.Time{}, err
		}
	}
	for i := range o.burst {
		if err := wait(o.rounds + i); err != nil {
			return time.Time{}, err
		}
	}
	return burstStart, nil
}

func makePayload(seq, size int) []byte {
	p := benchPayload{Seq: seq, T: time.Now().UnixNano(), Pad: strings.Repeat("x", max(0, size-48))}
	b, _ := json.Marshal(p)
	return b
}

// measure runs the workload against t and returns its row.
func measure(ctx context.Context, kind, system string, t target, o options) (result, error) {
	res := result{kind: kind, system: system, conns: o.conns}
	rec := newRecorder(o.conns, o.rounds, o.burst)

	runtime.GC()
	time.Sleep(500 * time.Millisecond)
	var err error
	if res.rssBefore, err = rss(t.pid()); err != nil {
		return res, err
	}
	start := time.Now()
	if err := connectAll(ctx, t, o, rec); err != nil {
		return res, err
	}
	fmt.Fprintf(os.Stderr, "%s: %d connections joined in %s\n", system, o.conns, time.Since(start).Round(time.Millisecond))
	time.Sleep(o.settle)
	if res.rssAfterJoined, err = rss(t.pid()); err != nil {
		return res, err
	}
	res.rssGrowth = res.rssAfterJoined - res.rssBefore

	// Latency rounds: one broadcast at a time.
	wait := func(seq int) error {
		select {
		case <-rec.done[seq]:
			return nil
		case <-time.After(60 * time.Second):
			return fmt.Errorf("broadcast %d reached %d of %d clients within 60s", seq, rec.counts[seq].Load(), o.conns)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	burstStart, err := broadcast(ctx, t.publish, o, wait)
	if err != nil {
		return res, err
	}
	elapsed := time.Duration(rec.lastRecv.Load() - burstStart.UnixNano())
	res.perSecond = float64(o.burst*o.conns) / elapsed.Seconds()

	lat := rec.latencies[:min(int(rec.next.Load()), len(rec.latencies))]
	slices.Sort(lat)
	res.p50 = time.Duration(percentile(lat, 0.50))
	res.p99 = time.Duration(percentile(lat, 0.99))
	res.max = time.Duration(lat[len(lat)-1])
	t.closeClients()
	return res, nil
}

func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// connectAll opens o.conns clients, o.dialers at a time.
func connectAll(ctx context.Context, t target, o options, rec *recorder) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range o.dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= o.conns || ctx.Err() != nil {
					return
				}
				if err := t.connect(ctx, i, rec); err != nil {
					once.Do(func() { first = fmt.Errorf("client %d: %w", i, err); cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// rss returns a process's resident set size in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read RSS of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for %d", pid)
}

// fileLimit is the hard open-file limit.
func fileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Max, nil
}

// raiseFileLimit lifts the soft descriptor limit to the hard one, which
// child servers inherit; conns sockets plus slack must fit.
func raiseFileLimit(conns int) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise file limit: %w", err)
	}
	if need := uint64(conns) + 512; lim.Cur < need {
		return fmt.Errorf("file limit %d is below the %d descriptors %d connections need; lower -conns or raise the hard limit", lim.Cur, need, conns)
	}
	return nil
}
