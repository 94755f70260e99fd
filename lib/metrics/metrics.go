// Package metrics declares every Prometheus metric tidings exports, named
// tidings_<component>_<what>_<unit>, so that dashboards and alerts have one
// place to look. Each component gets its set built against a Registerer
// from the process's start (never the global one), and the process serves
// them with Handler.
package metrics

import (
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"sync"

	"github.com/felixge/httpsnoop"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry is a Prometheus registry that also remembers the names of the
// metrics registered on it, so a test can check a dashboard against what
// the code exports before any of them has a value.
type Registry struct {
	*prometheus.Registry
	mu    sync.Mutex
	names map[string]bool
}

// NewRegistry is a registry with the Go runtime and process collectors.
func NewRegistry() *Registry {
	reg := &Registry{Registry: prometheus.NewRegistry(), names: map[string]bool{}}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MustRegister registers collectors and records their metric names.
func (r *Registry) MustRegister(cs ...prometheus.Collector) {
	r.Registry.MustRegister(cs...)
	descs := make(chan *prometheus.Desc)
	go func() {
		for _, c := range cs {
			c.Describe(descs)
		}
		close(descs)
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range descs {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
}

// fqName reads the name out of a Desc's description, the only place the
// client library shows it.
var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Names lists the metrics registered so far, sorted.
func (r *Registry) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.names))
	for n := range r.names {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Handler serves a registry's metrics at /metrics.
func Handler(reg *Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// latencyBuckets span a fast cache hit to a slow function call.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Functions are the metrics of the function side: each call a function
// host (of-watchdog's upstream or the local FaaS host) serves.
type Functions struct {
	Calls   *prometheus.CounterVec   // tidings_function_calls_total{function,status}
	Seconds *prometheus.HistogramVec // tidings_function_duration_seconds{function,status}
}

// NewFunctions registers the function metrics on reg.
func NewFunctions(reg prometheus.Registerer) *Functions {
	m := &Functions{
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_function_calls_total", Help: "Function calls served, by function and HTTP status.",
		}, []string{"function", "status"}),
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tidings_function_duration_seconds", Help: "Time to serve a function call, by function and HTTP status.",
			Buckets: latencyBuckets,
		}, []string{"function", "status"}),
	}
	reg.MustRegister(m.Calls, m.Seconds)
	return m
}

// Gateway are gateway-ws's own counters; its gauges (connections, topics,
// breakers, jobs) are read at scrape time with GaugeFunc and Collect.
type Gateway struct {
	Joins       *prometheus.CounterVec // tidings_gateway_joins_total{result}
	MessagesIn  prometheus.Counter     // tidings_gateway_messages_in_total
	MessagesOut prometheus.Counter     // tidings_gateway_messages_out_total
	// MessagesDropped counts client frames over the inbound rate that got
	// no reply (a flood gets one "rate limited" reply per second).
	MessagesDropped prometheus.Counter     // tidings_gateway_messages_dropped_total
	Publishes       *prometheus.CounterVec // tidings_gateway_publishes_total{outcome}
}

// NewGateway registers the gateway metrics on reg.
func NewGateway(reg prometheus.Registerer) *Gateway {
	m := &Gateway{
		Joins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_gateway_joins_total", Help: "Channel joins, by result (ok, refused, error).",
		}, []string{"result"}),
		MessagesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_gateway_messages_in_total", Help: "Frames received from clients.",
		}),
		MessagesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_gateway_messages_out_total", Help: "Frames sent to clients.",
		}),
		MessagesDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_gateway_messages_dropped_total", Help: "Frames from clients over the inbound rate, dropped without a reply.",
		}),
		Publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_gateway_publishes_total", Help: "Publishes, by outcome (committed, aborted, pending, refused, failed).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.Joins, m.MessagesIn, m.MessagesOut, m.Publishes, m.MessagesDropped)
	return m
}

// TwoPC are the coordinator's metrics.
type TwoPC struct {
	PhaseSeconds *prometheus.HistogramVec // tidings_2pc_phase_duration_seconds{phase}
	Transactions *prometheus.CounterVec   // tidings_2pc_transactions_total{outcome}
	AcksRelayed  prometheus.Counter       // tidings_acks_relayed_total
}

// NewTwoPC registers the coordinator metrics on reg.
func NewTwoPC(reg prometheus.Registerer) *TwoPC {
	m := &TwoPC{
		PhaseSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tidings_2pc_phase_duration_seconds", Help: "Time of each two-phase commit phase (prepare, commit, rollback), and of the live delivery after a commit (deliver).",
			Buckets: latencyBuckets,
		}, []string{"phase"}),
		Transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_2pc_transactions_total", Help: "Transactions finished by this replica, by outcome (committed, aborted, recovered).",
		}, []string{"outcome"}),
		AcksRelayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_acks_relayed_total", Help: "Acks this replica relayed from the persist participant's outbox to the counter (several replicas may relay one ack).",
		}),
	}
	reg.MustRegister(m.PhaseSeconds, m.Transactions, m.AcksRelayed)
	return m
}

// Calls are the metrics of gateway-ws's calls to functions.
type Calls struct {
	Seconds *prometheus.HistogramVec // tidings_gateway_function_call_duration_seconds{function,status}
}

// NewCalls registers the function-call metrics on reg.
func NewCalls(reg prometheus.Registerer) *Calls {
	m := &Calls{
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tidings_gateway_function_call_duration_seconds", Help: "Calls from gateway-ws to functions, by function and status (HTTP status, or open, busy, down, error).",
			Buckets: latencyBuckets,
		}, []string{"function", "status"}),
	}
	reg.MustRegister(m.Seconds)
	return m
}

// GaugeFunc registers a gauge whose value is read at each scrape.
func GaugeFunc(reg prometheus.Registerer, name, help string, value func() float64) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, value))
}

// Collect registers a set of labelled gauges read at each scrape: collect
// calls emit once per label value set.
func Collect(reg prometheus.Registerer, name, help string, labels []string, collect func(emit func(value float64, labelValues ...string))) {
	reg.MustRegister(&scrapeCollector{desc: prometheus.NewDesc(name, help, labels, nil), kind: prometheus.GaugeValue, collect: collect})
}

// CollectCounters is Collect for counts that only grow, kept elsewhere
// (the cache's own statistics).
func CollectCounters(reg prometheus.Registerer, name, help string, labels []string, collect func(emit func(value float64, labelValues ...string))) {
	reg.MustRegister(&scrapeCollector{desc: prometheus.NewDesc(name, help, labels, nil), kind: prometheus.CounterValue, collect: collect})
}

type scrapeCollector struct {
	desc    *prometheus.Desc
	kind    prometheus.ValueType
	collect func(emit func(value float64, labelValues ...string))
}

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	c.collect(func(v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(c.desc, c.kind, v, lv...)
	})
}

// Observe wraps a function's HTTP handler to count its calls and time
// them by status.
func (m *Functions) Observe(function string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := httpsnoop.CaptureMetrics(next, w, r)
		status := strconv.Itoa(got.Code)
		m.Calls.WithLabelValues(function, status).Inc()
		m.Seconds.WithLabelValues(function, status).Observe(got.Duration.Seconds())
	})
}
