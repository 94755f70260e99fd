// Command cache benchmarks lib/cache: the same Zipf-skewed read workload,
// in the same run, against each store (memory, redis, near), and prints a
// Markdown section with the machine and a table:
//
//	go run ./infra/bench/cache
//
// Every store starts cold and serves -ops reads of keys drawn from a Zipf
// distribution (exponent -s over -keys keys) through GetOrLoad, by -workers
// goroutines. A miss calls a loader standing in for PostgreSQL that sleeps
// -load; with probability -writes an operation instead deletes its key, as
// a function does after changing the row behind it (in the near store, that
// is an invalidation through Redis). Process memory holds at most -capacity
// entries, fewer than there are keys, so the memory tier's hit ratio shows
// how well it keeps the hot keys.
//
// Latency is of one GetOrLoad call: "get" over every read, misses included;
// "hit" over the reads that did not run the loader themselves (a read that
// shared another's load counts as a hit, having waited for it). The hit ratio is the share of reads answered without the
// loader; "from memory" is the share answered by process memory. Redis is
// the one at -redis-url, under a key prefix of the bench's own that is
// removed afterwards.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/infra/bench/machine"
	"tidings/lib/cache"
	"tidings/lib/config"
	"tidings/lib/logging"
	"tidings/lib/testenv"
)

type options struct {
	ops      int
	keys     uint64
	s        float64
	workers  int
	capacity int
	load     time.Duration
	writes   float64
	value    int
	redisURL string
}

func main() {
	var o options
	flag.IntVar(&o.ops, "ops", 100_000, "reads (and deletes) per store")
	flag.Uint64Var(&o.keys, "keys", 100_000, "distinct keys")
	flag.Float64Var(&o.s, "s", 1.1, "Zipf exponent (> 1; larger is more skewed)")
	flag.IntVar(&o.workers, "workers", 4, "concurrent callers")
	flag.IntVar(&o.capacity, "capacity", 10_000, "entries kept in process memory")
	flag.DurationVar(&o.load, "load", 200*time.Microsecond, "time a miss spends in the stand-in database loader")
	flag.Float64Var(&o.writes, "writes", 0.01, "share of operations that delete their key instead of reading it")
	flag.IntVar(&o.value, "value", 256, "value size in bytes")
	flag.StringVar(&o.redisURL, "redis-url", testenv.RedisURL(), "Redis for the redis and near stores (under a prefix of the bench's own)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "cache bench:", err)
		os.Exit(1)
	}
}

type result struct {
	store      cache.Store
	p50, p99   time.Duration
	hit50      time.Duration
	hit99      time.Duration
	opsPerSec  float64
	hitRatio   float64
	fromMemory float64
}

func run(o options) error {
	rc, err := config.ParseRedis(o.redisURL)
	if err != nil {
		return fmt.Errorf("redis url: %w", err)
	}
	rdb := rc.Client()
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := rdb.InfoMap(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("redis at %s: %w", o.redisURL, err)
	}
	prefix := "tidings-bench:" + rand.Text() + ":"
	defer cleanup(rdb, prefix)

	var results []result
	for _, store := range []cache.Store{cache.Memory, cache.Redis, cache.Near} {
		r, err := bench(o, store, rdb, prefix+string(store)+":")
		if err != nil {
			return fmt.Errorf("%s: %w", store, err)
		}
		results = append(results, r)
	}

	fmt.Printf("### Cache: get latency and hit ratio per store\n\n")
	fmt.Printf("%s; Redis %s on loopback. `go run ./infra/bench/cache -ops %d -keys %d -s %g -workers %d -capacity %d -load %s -writes %g -value %d`, %s.\n\n",
		machine.Describe(), info["Server"]["redis_version"], o.ops, o.keys, o.s, o.workers, o.capacity, o.load, o.writes, o.value,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Println("| store | get p50 | get p99 | hit p50 | hit p99 | ops/s | hit ratio | from memory |")
	fmt.Println("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range results {
		fmt.Printf("| %s | %s | %s | %s | %s | %.0f | %.1f%% | %.1f%% |\n",
			r.store, micros(r.p50), micros(r.p99), micros(r.hit50), micros(r.hit99), r.opsPerSec, 100*r.hitRatio, 100*r.fromMemory)
	}
	return nil
}

// bench runs the workload against one cold store.
func bench(o options, store cache.Store, rdb redis.UniversalClient, prefix string) (result, error) {
	c, err := cache.New(cache.Config{Store: store, Prefix: prefix, MaxEntries: o.capacity, TTL: time.Hour, LocalTTL: time.Hour, Logger: logging.New("warn", "bench-cache")}, rdb)
	if err != nil {
		return result{}, err
	}
	defer c.Close()
	value := make([]byte, o.value)

	perWorker := o.ops / o.workers
	lat := make([][]time.Duration, o.workers)
	hits := make([][]time.Duration, o.workers)
	errs := make([]error, o.workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range o.workers {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(w), 42))
			zipf := mrand.NewZipf(rng, o.s, 1, o.keys-1)
			ctx := context.Background()
			lat[w] = make([]time.Duration, 0, perWorker)
			for range perWorker {
				key := "k:" + strconv.FormatUint(zipf.Uint64(), 10)
				if rng.Float64() < o.writes {
					if err := c.Delete(ctx, key); err != nil {
						errs[w] = err
						return
					}
					continue
				}
				loaded := false
				t0 := time.Now()
				_, err := c.GetOrLoad(ctx, key, 0, func(context.Context) ([]byte, error) {
					loaded = true
					time.Sleep(o.load)
					return value, nil
				})
				if err != nil {
					errs[w] = err
					return
				}
				d := time.Since(t0)
				lat[w] = append(lat[w], d)
				if !loaded {
					hits[w] = append(hits[w], d)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return result{}, err
		}
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	hit := slices.Concat(hits...)
	slices.Sort(hit)
	s := c.Stats()
	reads := float64(len(all))
	return result{
		store:      store,
		p50:        percentile(all, 0.50),
		p99:        percentile(all, 0.99),
		hit50:      percentile(hit, 0.50),
		hit99:      percentile(hit, 0.99),
		opsPerSec:  float64(perWorker*o.workers) / elapsed.Seconds(),
		hitRatio:   1 - float64(s.Loads)/reads,
		fromMemory: float64(s.LocalHits) / reads,
	}, nil
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)]
}

func micros(d time.Duration) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

// cleanup removes every key the bench wrote.
func cleanup(rdb redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			rdb.Del(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		rdb.Del(ctx, batch...)
	}
}
