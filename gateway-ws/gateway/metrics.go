package gateway

import (
	"context"
	"time"

	"tidings/gateway-ws/jobs"
	"tidings/lib/metrics"
)

// scrapeTimeout bounds the Redis reads of one scrape.
const scrapeTimeout = 2 * time.Second

// exportGauges registers the gauges read at scrape time: sockets and
// topics, each function's health and breaker, unfinished transactions,
// the job queue's depth and ages, and the cache's hits and misses.
func (s *Server) exportGauges() {
	metrics.CollectCounters(s.reg, "tidings_cache_requests_total",
		"Cache reads by result: hit in process memory or Redis (tier), or miss; and loads from the database.",
		[]string{"tier", "result"}, func(emit func(float64, ...string)) {
			st := s.cache.Stats()
			emit(float64(st.LocalHits), "memory", "hit")
			emit(float64(st.RedisHits), "redis", "hit")
			emit(float64(st.Misses), string(s.cache.Store()), "miss")
			emit(float64(st.Loads), "database", "load")
		})
	metrics.GaugeFunc(s.reg, "tidings_gateway_connections", "WebSocket connections open on this replica.",
		func() float64 { return float64(s.Connections()) })
	metrics.GaugeFunc(s.reg, "tidings_gateway_topics", "Channel topics with members on this replica.",
		func() float64 { return float64(s.Topics()) })
	metrics.Collect(s.reg, "tidings_gateway_function_up", "1 when the function passes its health checks, 0 when marked down.",
		[]string{"function"}, func(emit func(float64, ...string)) {
			for _, f := range s.calls.Statuses() {
				emit(bool01(f.Up), f.Name)
			}
		})
	metrics.Collect(s.reg, "tidings_gateway_breaker_state", "Circuit breaker of each function: 0 closed, 1 half-open, 2 open.",
		[]string{"function"}, func(emit func(float64, ...string)) {
			for _, f := range s.calls.Statuses() {
				emit(map[string]float64{"closed": 0, "half-open": 1, "open": 2}[f.Breaker], f.Name)
			}
		})
	metrics.GaugeFunc(s.reg, "tidings_2pc_open_transactions", "Transactions not yet finished, across every replica.",
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
			defer cancel()
			n, _ := s.coord.OpenTransactions(ctx)
			return float64(n)
		})
	metrics.Collect(s.reg, "tidings_jobs_queued", "Jobs by function and state (waiting, running), across every replica.",
		[]string{"function", "state"}, func(emit func(float64, ...string)) {
			stats, ok := s.jobQueueStats()
			if !ok {
				return
			}
			for _, f := range stats.Functions {
				emit(float64(f.Waiting), f.Function, "waiting")
				emit(float64(f.Running), f.Function, "running")
			}
			emit(float64(stats.Delayed), "", "delayed")
			emit(float64(stats.DeadLetters), "", "dead")
		})
	metrics.Collect(s.reg, "tidings_jobs_oldest_age_seconds", "Age of each function's oldest unfinished job.",
		[]string{"function"}, func(emit func(float64, ...string)) {
			stats, ok := s.jobQueueStats()
			if !ok {
				return
			}
			for _, f := range stats.Functions {
				emit(f.OldestAge.Seconds(), f.Function)
			}
		})
}

func (s *Server) jobQueueStats() (jobs.Stats, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	st, err := s.jobs.Stats(ctx)
	return st, err == nil
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
