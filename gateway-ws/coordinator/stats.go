package coordinator

import (
	"context"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Stats count transactions across every replica and restart; they are
// kept in Redis beside the records.
type Stats struct {
	Published int64 `json:"published"` // transactions started
	Committed int64 `json:"committed"` // finished by commit
	Aborted   int64 `json:"aborted"`   // finished by rollback
	Recovered int64 `json:"recovered"` // finished by recovery (also counted above)
}

// Overview is what a dashboard shows of the transactions, across every
// replica: the Stats, and how many records are not yet finished (being
// published now, or waiting for recovery).
type Overview struct {
	Stats
	Open int64 `json:"open"`
}

// Stats returns the counts.
func (c *Coordinator) Stats(ctx context.Context) (Stats, error) {
	o, err := c.records.overview(ctx)
	return o.Stats, err
}

// OpenTransactions returns how many transaction records are not yet
// finished.
func (c *Coordinator) OpenTransactions(ctx context.Context) (int64, error) {
	return c.records.unfinished(ctx)
}

// Overview returns the counts and the unfinished records together.
func (c *Coordinator) Overview(ctx context.Context) (Overview, error) {
	return c.records.overview(ctx)
}

// overview reads the counts and the sizes of the open sets in one
// pipeline (on a cluster, one round trip per shard).
func (r *records) overview(ctx context.Context) (Overview, error) {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	var counts *redis.MapStringStringCmd
	var open func() int64
	if _, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		counts = p.HGetAll(ctx, r.statsKey())
		open = r.countOpen(ctx, p)
		return nil
	}); err != nil {
		return Overview{}, err
	}
	h := counts.Val()
	n := func(k string) int64 { v, _ := strconv.ParseInt(h[k], 10, 64); return v }
	return Overview{
		Stats: Stats{Published: n("published"), Committed: n("committed"), Aborted: n("aborted"), Recovered: n("recovered")},
		Open:  open(),
	}, nil
}

// unfinished is how many records the open sets hold.
func (r *records) unfinished(ctx context.Context) (int64, error) {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	var open func() int64
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		open = r.countOpen(ctx, p)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return open(), nil
}

// countOpen queues the size of every bucket's open set in p, and returns
// their sum once p ran.
func (r *records) countOpen(ctx context.Context, p redis.Pipeliner) func() int64 {
	cards := make([]*redis.IntCmd, buckets)
	for b := range buckets {
		cards[b] = p.ZCard(ctx, r.open(b))
	}
	return func() int64 {
		var n int64
		for _, c := range cards {
			n += c.Val()
		}
		return n
	}
}

func (r *records) statsKey() string { return r.prefix + "tx:stats" }

// count adds one to a statistic; losing a count to a Redis outage is
// acceptable, losing a transaction is not, so errors are ignored.
func (r *records) count(ctx context.Context, field string) {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	r.rdb.HIncrBy(ctx, r.statsKey(), field, 1)
}
