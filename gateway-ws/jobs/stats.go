package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// FunctionStats is one function's queue.
type FunctionStats struct {
	Function string `json:"function"`
	Waiting  int64  `json:"waiting"` // queued, not read by a worker yet
	Running  int64  `json:"running"` // read by a worker and not acknowledged (includes those of dead workers)
	// OldestAge is how long the oldest unacknowledged entry has been in
	// the stream; 0 when there is none.
	OldestAge time.Duration `json:"oldest_age_ns"`
}

// Stats is the queue's depth, for metrics and the dashboard.
type Stats struct {
	Functions   []FunctionStats `json:"functions"`
	Delayed     int64           `json:"delayed"`      // waiting for a retry
	DeadLetters int64           `json:"dead_letters"` // in the dead-letter stream
}

// Stats reads the queue's depth and ages across every replica.
func (q *Queue) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	names, err := q.rdb.SMembers(ctx, q.functionsKey()).Result()
	if err != nil {
		return s, fmt.Errorf("job stats: %w", err)
	}
	q.mu.Lock()
	for f := range q.known {
		if !slices.Contains(names, f) {
			names = append(names, f)
		}
	}
	q.mu.Unlock()
	sort.Strings(names)
	for _, f := range names {
		fs, err := q.functionStats(ctx, f)
		if err != nil {
			return s, err
		}
		s.Functions = append(s.Functions, fs)
	}
	if s.Delayed, err = q.rdb.ZCard(ctx, q.delayedKey()).Result(); err != nil {
		return s, fmt.Errorf("job stats: %w", err)
	}
	if s.DeadLetters, err = q.rdb.XLen(ctx, q.deadKey()).Result(); err != nil {
		return s, fmt.Errorf("job stats: %w", err)
	}
	return s, nil
}

func (q *Queue) functionStats(ctx context.Context, function string) (FunctionStats, error) {
	fs := FunctionStats{Function: function}
	stream := q.streamKey(function)
	// Acknowledged entries are deleted, so the stream holds exactly the
	// waiting and the running ones.
	length, err := q.rdb.XLen(ctx, stream).Result()
	if err != nil {
		return fs, fmt.Errorf("job stats of %s: %w", function, err)
	}
	pending, err := q.rdb.XPending(ctx, stream, group).Result()
	if err != nil && !isNoGroup(err) && !errors.Is(err, redis.Nil) {
		return fs, fmt.Errorf("job stats of %s: %w", function, err)
	}
	if pending != nil {
		fs.Running = pending.Count
	}
	fs.Waiting = max(length-fs.Running, 0)
	oldest, err := q.rdb.XRangeN(ctx, stream, "-", "+", 1).Result()
	if err != nil {
		return fs, fmt.Errorf("job stats of %s: %w", function, err)
	}
	if len(oldest) == 1 {
		ms, _ := strconv.ParseInt(strings.SplitN(oldest[0].ID, "-", 2)[0], 10, 64)
		fs.OldestAge = max(time.Since(time.UnixMilli(ms)), 0)
	}
	return fs, nil
}
