package redisx_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/lib/redisx"
	"tidings/lib/testenv"
)

// TestPublishReachesASubscriberOfTheSameChannel, on whichever Redis the
// tests run against (one server, or a cluster: then SSUBSCRIBE and
// SPUBLISH on the shard of the channel's slot).
func TestPublishReachesASubscriberOfTheSameChannel(t *testing.T) {
	rds := testenv.NewRedis(t)
	ctx := context.Background()
	a, b := rds.Prefix+"{c}:a", rds.Prefix+"{c}:b"
	ps := redisx.Subscribe(ctx, rds.Client, a)
	defer ps.Close()
	if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		t.Fatalf("subscribe %s: %v", a, err)
	}
	if err := redisx.AddChannels(ctx, rds.Client, ps, b); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		t.Fatalf("subscribe %s: %v", b, err)
	}
	for _, ch := range []string{a, b} {
		if n, err := redisx.Publish(ctx, rds.Client, ch, "hello "+ch).Result(); err != nil || n != 1 {
			t.Fatalf("publish on %s: %d receivers, %v; want 1", ch, n, err)
		}
		msg, err := ps.ReceiveTimeout(ctx, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := msg.(*redis.Message); !ok || m.Channel != ch || m.Payload != "hello "+ch {
			t.Fatalf("received %#v, want hello on %s", msg, ch)
		}
	}
	if err := redisx.RemoveChannels(ctx, rds.Client, ps, a); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		t.Fatalf("unsubscribe %s: %v", a, err)
	}
	if n, err := redisx.Publish(ctx, rds.Client, a, "gone").Result(); err != nil || n != 0 {
		t.Fatalf("publish on %s after unsubscribing: %d receivers, %v; want 0", a, n, err)
	}
}

// TestReplicatedRunsItsCommandsAsOneTransaction, on whichever Redis the
// tests run against.
func TestReplicatedRunsItsCommandsAsOneTransaction(t *testing.T) {
	rds := testenv.NewRedis(t)
	ctx := context.Background()
	h, z := rds.Prefix+"{r}:hash", rds.Prefix+"{r}:set"
	cmds, err := redisx.Replicated(ctx, rds.Client, h, func(p redis.Pipeliner) error {
		p.HSet(ctx, h, "state", "committing")
		p.ZAdd(ctx, z, redis.Z{Score: 1, Member: "x"})
		return nil
	})
	if err != nil || len(cmds) != 2 {
		t.Fatalf("replicated write: %d commands, %v", len(cmds), err)
	}
	if v, err := rds.Client.HGet(ctx, h, "state").Result(); err != nil || v != "committing" {
		t.Fatalf("state %q, %v; want committing", v, err)
	}
	if n, err := rds.Client.ZCard(ctx, z).Result(); err != nil || n != 1 {
		t.Fatalf("set of %d, %v; want 1", n, err)
	}
}
