// Command ws is the WebSocket fan-out benchmark: N sockets joined to one
// topic on one gateway-ws, and the same workload in the same run against a
// nats-server with its WebSocket listener and against a centrifuge server
// with its Redis broker. It starts everything it measures itself (a bench
// database on the local PostgreSQL, Redis key prefixes of its own, the
// gateway binary, a nats-server on loopback ports, the centrifuge server as
// a child process of this binary) and prints a Markdown section with the
// machine and a table:
//
//	go run ./infra/bench/ws -conns 10000
//
// Latency is measured from just before the publisher sends a broadcast to
// when a client has read it (one clock: all on one machine); p50 and p99 are
// over every delivery of the latency rounds, each round sent after the
// previous one reached every client. Deliveries per second come from a
// burst of broadcasts sent back to back. Memory per idle connection is the
// server process's RSS growth from before the first socket to after the
// last one joined, divided by the number of sockets.
//
// With -replicas it measures gateway-ws alone at a scale one process
// cannot hold under the open-file limit (see replicas.go):
//
//	go run ./infra/bench/ws -replicas 8 -conns 100000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"tidings/infra/bench/machine"
	"tidings/lib/logging"
	"tidings/lib/testenv"
)

type options struct {
	conns       int
	rounds      int
	burst       int
	payload     int
	dialers     int
	gatewayBin  string
	natsBin     string
	adminURL    string
	redisURL    string
	settle      time.Duration
	skipNATS    bool
	skipGateway bool

	skipCentrifuge   bool
	serveCentrifuge  string // child mode: run the centrifuge server on this address
	centrifugePrefix string

	replicas int  // > 0: the multi-replica run instead of the side-by-side one
	workers  int  // client processes of the multi-replica run
	wsWorker bool // child mode: one client process of the multi-replica run
}

func main() {
	var o options
	flag.IntVar(&o.conns, "conns", 10000, "WebSocket connections per system")
	flag.IntVar(&o.rounds, "rounds", 30, "latency rounds (one broadcast each, sent after the previous one was delivered everywhere)")
	flag.IntVar(&o.burst, "burst", 20, "broadcasts sent back to back for deliveries per second")
	flag.IntVar(&o.payload, "payload", 256, "approximate payload size in bytes")
	flag.IntVar(&o.dialers, "dialers", 64, "concurrent dials while connecting")
	flag.StringVar(&o.gatewayBin, "gateway-bin", "", "gateway-ws binary (default: go build ./gateway-ws into a temp dir)")
	flag.StringVar(&o.natsBin, "nats-server", "nats-server", "nats-server binary")
	flag.StringVar(&o.adminURL, "admin-url", testenv.AdminURL(), "PostgreSQL URL allowed to create the bench database")
	flag.StringVar(&o.redisURL, "redis-url", testenv.RedisURL(), "Redis for the gateway (under a prefix of the bench's own)")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "wait after the last join before reading RSS")
	flag.BoolVar(&o.skipNATS, "skip-nats", false, "measure only gateway-ws")
	flag.BoolVar(&o.skipGateway, "skip-gateway", false, "measure without gateway-ws")
	flag.BoolVar(&o.skipCentrifuge, "skip-centrifuge", false, "measure without the centrifuge server")
	flag.IntVar(&o.replicas, "replicas", 0, "run gateway-ws alone as this many replicas sharing -conns connections, dialed by -workers client processes (the 100k run)")
	flag.IntVar(&o.workers, "workers", 0, "client processes of a -replicas run (default: as many as replicas)")
	flag.StringVar(&o.serveCentrifuge, "serve-centrifuge", "", "internal: run the centrifuge server on this address")
	flag.StringVar(&o.centrifugePrefix, "centrifuge-prefix", "", "internal: the centrifuge server's Redis prefix")
	flag.BoolVar(&o.wsWorker, "ws-worker", false, "internal: be one client process of a -replicas run")
	flag.Parse()
	log := logging.New("info", "bench-ws")
	if o.workers <= 0 {
		o.workers = o.replicas
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	switch {
	case o.serveCentrifuge != "":
		return serveCentrifuge(o.serveCentrifuge, o.redisURL, o.centrifugePrefix)
	case o.wsWorker:
		return runWorker(ctx)
	case o.replicas > 0:
		if err := raiseFileLimit(0); err != nil { // the replicas inherit it
			return err
		}
		r, err := benchReplicas(ctx, o)
		if err != nil {
			return fmt.Errorf("gateway-ws ×%d: %w", o.replicas, err)
		}
		fmt.Print(replicaReport(o, r))
		return nil
	}
	if err := raiseFileLimit(o.conns); err != nil {
		return err
	}
	var results []result
	if !o.skipGateway {
		r, err := benchGateway(ctx, o)
		if err != nil {
			return fmt.Errorf("gateway-ws: %w", err)
		}
		results = append(results, r)
	}
	if !o.skipNATS {
		r, err := benchNATS(ctx, o)
		if err != nil {
			return fmt.Errorf("nats-server: %w", err)
		}
		results = append(results, r)
	}
	if !o.skipCentrifuge {
		r, err := benchCentrifuge(ctx, o)
		if err != nil {
			return fmt.Errorf("centrifuge: %w", err)
		}
		results = append(results, r)
	}
	fmt.Print(report(o, results))
	return nil
}

// header writes a section's date, machine and command.
func header(b *strings.Builder, o options) {
	fmt.Fprintf(b, "### %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(b, "- machine: %s\n", machine.Describe())
	fmt.Fprintf(b, "- command: `%s`\n", strings.Join(append([]string{"go run ./infra/bench/ws"}, os.Args[1:]...), " "))
}

// report renders the Markdown section kept in docs/benchmarks.md.
func report(o options, results []result) string {
	var b strings.Builder
	header(&b, o)
	fmt.Fprintf(&b, "- workload: %d WebSocket connections joined to one topic; %d latency rounds; a burst of %d broadcasts; payload ~%d B\n\n",
		o.conns, o.rounds, o.burst, o.payload)
	b.WriteString("| system | connections | p50 | p99 | max | deliveries/s | RSS growth | per idle connection |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	byKind := map[string]result{}
	for _, r := range results {
		byKind[r.kind] = r
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %.0f | %.1f MiB | %.1f KiB |\n",
			r.system, r.conns, ms(r.p50), ms(r.p99), ms(r.max), r.perSecond,
			float64(r.rssGrowth)/(1<<20), float64(r.rssGrowth)/float64(r.conns)/1024)
	}
	gw, ok := byKind[kindGateway]
	if !ok {
		return b.String()
	}
	var bars []string
	if nats, ok := byKind[kindNATS]; ok {
		ratio := float64(gw.p99) / float64(nats.p99)
		bars = append(bars, fmt.Sprintf("gateway-ws p99 / NATS p99 = %.2f (at most 0.5: %s)", ratio, verdict(ratio <= 0.5)))
	}
	if cf, ok := byKind[kindCentrifuge]; ok {
		ratio := float64(gw.p99) / float64(cf.p99)
		bars = append(bars, fmt.Sprintf("gateway-ws p99 / centrifuge p99 = %.2f (at most 1: %s)", ratio, verdict(ratio <= 1)))
	}
	perConn := float64(gw.rssGrowth) / float64(gw.conns) / 1024
	bars = append(bars, fmt.Sprintf("gateway-ws per idle connection = %.1f KiB (at most 12: %s)", perConn, verdict(perConn <= 12)))
	fmt.Fprintf(&b, "\nBars (issue 13): %s.\n", strings.Join(bars, "; "))
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
