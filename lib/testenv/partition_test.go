package testenv

import (
	"context"
	"testing"
	"time"
)

// TestPartitionCutsAndHeals proves the tool the partition tests rely on: a
// server in the namespace answers, stops answering (a timeout, not a
// refusal) once cut, and answers again, on the same connection, once
// healed.
func TestPartitionCutsAndHeals(t *testing.T) {
	p := NewPartition(t)
	redisServer := p.StartRedis()
	db := p.StartPostgres()
	c := redisServer.Client()
	ctx := context.Background()
	answers := func() (redisErr, pgErr error) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return c.Ping(ctx).Err(), db.Pool.Ping(ctx)
	}
	if r, pg := answers(); r != nil || pg != nil {
		t.Fatalf("before the cut: Redis %v, PostgreSQL %v; want both answering", r, pg)
	}
	p.Cut()
	if r, pg := answers(); r == nil || pg == nil {
		t.Fatalf("during the cut: Redis %v, PostgreSQL %v; want both unreachable", r, pg)
	}
	p.Heal()
	for i := 0; ; i++ { // bounded: the dropped connections are redialled
		r, pg := answers()
		if r == nil && pg == nil {
			break
		}
		if i == 20 {
			t.Fatalf("after the heal: Redis %v, PostgreSQL %v; want both answering", r, pg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
