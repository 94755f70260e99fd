package main

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"tidings/infra/proc"
	"tidings/lib/config"
)

// A developer who names DATABASE_URL names where tidings lives: the
// participants' databases are the ones they name, else that one, as for
// every tidings process; make up creates nothing on their server.
func TestGivenDatabaseURLIsUsedForTheParticipantsTheDeveloperLeftOut(t *testing.T) {
	const dir, counter = "postgres://u@db.invalid/app", "postgres://u@other.invalid/c"
	for _, c := range []struct {
		given, want config.Databases
	}{
		{config.Databases{Directory: dir}, config.Databases{Directory: dir, Persist: dir, Counter: dir}},
		{config.Databases{Directory: dir, Counter: counter}, config.Databases{Directory: dir, Persist: dir, Counter: counter}},
	} {
		got, svc, err := ensurePostgres(context.Background(), slog.New(slog.DiscardHandler), c.given, "1", "tidings")
		if err != nil || got != c.want || svc.stop != nil {
			t.Errorf("given %+v: %+v (server started: %v, %v), want %+v", c.given, got, svc.stop != nil, err, c.want)
		}
	}
}

// With DEV_REDIS=cluster and no REDIS_URL, make up starts a Redis Cluster
// of three masters with a replica each and names it in the URL the stack
// uses; Ctrl-C's Stop leaves no node answering. A REDIS_URL the developer
// gives wins, and a kind that is neither server nor cluster stops it.
func TestDevRedisClusterStartsAClusterTheStackUses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	svc, err := ensureRedis(ctx, log, "", freePort(t), "cluster")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			svc.Stop()
		}
	}()
	rc, err := config.ParseRedis(svc.URL)
	if err != nil || !rc.IsCluster() {
		t.Fatalf("URL %q: cluster %v, %v; want a redis+cluster:// URL", svc.URL, err == nil && rc.IsCluster(), err)
	}
	seeds := strings.Split(strings.TrimPrefix(svc.URL, config.RedisClusterScheme+"://"), ",")
	client := rc.Client()
	defer client.Close()
	// The replicas attach to their masters a moment after the slots are
	// served (redis-cli --cluster create asks, gossip tells the others):
	// wait for all three, generously.
	var nodes string
	err = proc.WaitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		if nodes, err = client.ClusterNodes(ctx).Result(); err != nil {
			return err
		}
		masters, replicas := 0, 0
		for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
			fields := strings.Fields(line)
			switch {
			case strings.Contains(fields[2], "master") && len(fields) > 8: // serving slots
				masters++
			case strings.Contains(fields[2], "slave"):
				replicas++
			}
		}
		if masters != 3 || replicas != 3 {
			return fmt.Errorf("%d masters serving slots and %d replicas", masters, replicas)
		}
		return nil
	})
	if err != nil || len(seeds) != 6 {
		t.Errorf("cluster: %v, %d seeds in the URL; want 3 masters with a replica each, 6 seeds:\n%s", err, len(seeds), nodes)
	}
	// A write and read through the stack's client: every slot is served.
	if err := client.Set(ctx, "tidings-test:devstack:{x}", "1", time.Minute).Err(); err != nil {
		t.Errorf("SET on the cluster: %v", err)
	}

	svc.Stop()
	stopped = true
	for _, addr := range seeds {
		if answers(addr) {
			t.Errorf("cluster node %s still answers after Stop", addr)
		}
	}

	given, err := ensureRedis(ctx, log, "redis://db.invalid:6379/0", "1", "cluster")
	if err != nil || given.URL != "redis://db.invalid:6379/0" || given.stop != nil {
		t.Errorf("REDIS_URL given with DEV_REDIS=cluster: %q (started: %v), %v; want the given URL, nothing started", given.URL, given.stop != nil, err)
	}
	if _, err := ensureRedis(ctx, log, "", "1", "sentinel"); err == nil {
		t.Error("DEV_REDIS=sentinel: no error")
	}
}
