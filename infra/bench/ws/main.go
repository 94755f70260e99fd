// Command ws is the WebSocket fan-out benchmark: N sockets joined to one
// topic on one gateway-ws, and the same workload in the same run against a
// nats-server with its WebSocket listener. It starts everything it
// measures itself (a bench database on the local PostgreSQL, a Redis key
// prefix of its own, the gateway binary, a nats-server on loopback ports)
// and prints a Markdown section with the machine and a table:
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
	flag.BoolVar(&o.skipGateway, "skip-gateway", false, "measure only nats-server")
	flag.Parse()
	log := logging.New("info", "bench-ws")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
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
	fmt.Print(report(o, results))
	return nil
}

// report renders the Markdown section kept in docs/benchmarks.md.
func report(o options, results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- machine: %s\n", machine.Describe())
	fmt.Fprintf(&b, "- command: `%s`\n", strings.Join(append([]string{"go run ./infra/bench/ws"}, os.Args[1:]...), " "))
	fmt.Fprintf(&b, "- workload: %d WebSocket connections joined to one topic; %d latency rounds; a burst of %d broadcasts; payload ~%d B\n\n",
		o.conns, o.rounds, o.burst, o.payload)
	b.WriteString("| system | connections | p50 | p99 | max | deliveries/s | RSS growth | per idle connection |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %.0f | %.1f MiB | %.1f KiB |\n",
			r.system, r.conns, ms(r.p50), ms(r.p99), ms(r.max), r.perSecond,
			float64(r.rssGrowth)/(1<<20), float64(r.rssGrowth)/float64(r.conns)/1024)
	}
	if len(results) == 2 {
		gw, nats := results[0], results[1]
		ratio := float64(gw.p99) / float64(nats.p99)
		perConn := float64(gw.rssGrowth) / float64(gw.conns) / 1024
		fmt.Fprintf(&b, "\nBars: gateway-ws p99 / NATS p99 = %.2f (at most 2: %s); gateway-ws per idle connection = %.1f KiB (at most 24: %s).\n",
			ratio, verdict(ratio <= 2), perConn, verdict(perConn <= 24))
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
