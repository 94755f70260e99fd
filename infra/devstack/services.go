package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/jackc/pgx/v5"

	"tidings/infra/proc"
	"tidings/lib/config"
)

// service is a backing server the stack uses; stop is nil for one that was
// already running.
type service struct {
	URL  string
	stop func()
}

func (s service) Stop() {
	if s.stop != nil {
		s.stop()
	}
}

// answers reports whether something accepts TCP connections at addr.
func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// devDatabases names the databases `make up` uses on a PostgreSQL it finds
// or starts: the directory, name, and each participant's own beside it, so
// that the participants share no tables, as in a deployment.
func devDatabases(name string) config.Databases {
	return config.Databases{Directory: name, Persist: name + "_persist", Counter: name + "_counter"}
}

// ensurePostgres returns the three databases' URLs and the server it
// started, if any. When the developer named the directory ($DATABASE_URL)
// it is theirs, and so are the participants' (left empty, they are the
// directory's, as for every tidings process: lib/config). Otherwise each
// database they did not name is one of devDatabases(name), created if
// missing on the server answering on the port, else on a throwaway server
// it starts.
func ensurePostgres(ctx context.Context, log *slog.Logger, given config.Databases, port, name string) (config.Databases, service, error) {
	if given.Directory != "" {
		return config.Config{DatabaseURL: given.Directory, PersistDatabaseURL: given.Persist, CounterDatabaseURL: given.Counter}.Databases(), service{}, nil
	}
	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%s/postgres?sslmode=disable", port)
	var svc service
	if answers("127.0.0.1:" + port) {
		log.Info("using the PostgreSQL server already running", "port", port)
	} else {
		var err error
		if svc, err = startPostgres(ctx, log, port); err != nil {
			return config.Databases{}, service{}, fmt.Errorf("no PostgreSQL on port %s and none could be started (set DATABASE_URL): %w", port, err)
		}
	}
	names := devDatabases(name)
	dbs := given
	for _, db := range []struct {
		url  *string
		name string
	}{
		{&dbs.Directory, names.Directory}, {&dbs.Persist, names.Persist}, {&dbs.Counter, names.Counter},
	} {
		if *db.url != "" {
			continue
		}
		if err := createDatabase(ctx, admin, db.name); err != nil {
			svc.Stop()
			return config.Databases{}, service{}, err
		}
		*db.url = dbURL(port, db.name)
	}
	return dbs, svc, nil
}

func dbURL(port, name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%s/%s?sslmode=disable", port, name)
}

func createDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL as postgres (set DATABASE_URL if it needs a password): %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize()); err != nil {
			return fmt.Errorf("create database %s: %w", name, err)
		}
	}
	return nil
}

// startPostgres runs a throwaway PostgreSQL in a temporary directory.
func startPostgres(ctx context.Context, log *slog.Logger, port string) (service, error) {
	dir, err := os.MkdirTemp("", "tidings-postgres-")
	if err != nil {
		return service{}, err
	}
	server, err := proc.StartPostgres(ctx, proc.PostgresOptions{Dir: dir, Listen: "127.0.0.1", Port: port})
	if err != nil {
		os.RemoveAll(dir)
		return service{}, err
	}
	admin := fmt.Sprintf("postgres://postgres@127.0.0.1:%s/postgres?sslmode=disable", port)
	stop := func() { server.Stop(syscall.SIGINT); os.RemoveAll(dir) }
	if err := proc.WaitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, admin)
		if err == nil {
			conn.Close(ctx)
		}
		return err
	}); err != nil {
		stop()
		return service{}, fmt.Errorf("postgres did not start (log in %s): %w", dir, err)
	}
	log.Info("started a throwaway PostgreSQL", "port", port, "dir", dir, "pid", server.Cmd.Process.Pid)
	return service{stop: stop}, nil
}

// ensureRedis returns given (the developer's $REDIS_URL), else, when kind
// is "cluster", a throwaway Redis Cluster of three masters with one
// replica each; else the server answering on the port, else a throwaway
// redis-server, else an embedded one.
func ensureRedis(ctx context.Context, log *slog.Logger, given, port, kind string) (service, error) {
	if kind != "server" && kind != "cluster" {
		return service{}, fmt.Errorf("$DEV_REDIS %q: want server or cluster", kind)
	}
	if u := given; u != "" {
		return service{URL: u}, nil
	}
	if kind == "cluster" {
		return startRedisCluster(ctx, log)
	}
	url := fmt.Sprintf("redis://127.0.0.1:%s/0", port)
	if answers("127.0.0.1:" + port) {
		log.Info("using the Redis server already running", "port", port)
		warnIfVolatile(ctx, log, url)
		return service{URL: url}, nil
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:" + port); err != nil {
			return service{}, fmt.Errorf("start embedded Redis: %w", err)
		}
		log.Info("no redis-server binary; started an embedded Redis", "port", port)
		return service{URL: url, stop: m.Close}, nil
	}
	dir, err := os.MkdirTemp("", "tidings-redis-")
	if err != nil {
		return service{}, err
	}
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--dir", dir}, proc.RedisPersistence...)
	server, err := proc.Start(filepath.Join(dir, "server.log"), nil, nil, bin, args...)
	if err != nil {
		os.RemoveAll(dir)
		return service{}, err
	}
	stop := func() { server.Stop(syscall.SIGTERM); os.RemoveAll(dir) }
	rc, err := config.ParseRedis(url)
	if err != nil {
		stop()
		return service{}, err
	}
	client := rc.Client()
	defer client.Close()
	if err := proc.WaitFor(ctx, 15*time.Second, func(ctx context.Context) error { return client.Ping(ctx).Err() }); err != nil {
		stop()
		return service{}, fmt.Errorf("redis-server did not start (log in %s): %w", dir, err)
	}
	log.Info("started a throwaway Redis", "port", port, "pid", server.Cmd.Process.Pid)
	return service{URL: url, stop: stop}, nil
}

// warnIfVolatile says so when the Redis found running keeps no append-only
// file: a restart then loses the transaction records, which recovery can
// only rebuild from the participants (README "When Redis loses the
// transaction records").
func warnIfVolatile(ctx context.Context, log *slog.Logger, url string) {
	rc, err := config.ParseRedis(url)
	if err != nil {
		return
	}
	client := rc.Client()
	defer client.Close()
	aof, err := client.ConfigGet(ctx, "appendonly").Result()
	if err == nil && aof["appendonly"] == "no" {
		log.Warn("the Redis found running keeps no append-only file; production Redis needs appendonly yes, appendfsync always, maxmemory-policy noeviction", "url", url)
	}
}

// startRedisCluster runs a throwaway Redis Cluster on loopback ports of
// its own (DEV_REDIS_PORT is one server's): three masters, so that keys
// and sharded channels spread over more than one, each with a replica, so
// that the writes that wait for one (redisx.Replicated) are answered.
func startRedisCluster(ctx context.Context, log *slog.Logger) (service, error) {
	dir, err := os.MkdirTemp("", "tidings-redis-cluster-")
	if err != nil {
		return service{}, err
	}
	c, err := proc.StartRedisCluster(ctx, dir, 3, 1)
	if err != nil {
		os.RemoveAll(dir)
		return service{}, fmt.Errorf("start a throwaway Redis Cluster (DEV_REDIS=cluster; needs redis-server and redis-cli): %w", err)
	}
	log.Info("started a throwaway Redis Cluster", "masters", 3, "replicas", 1, "url", c.URL(), "dir", dir)
	return service{URL: c.URL(), stop: func() { c.Stop(); os.RemoveAll(dir) }}, nil
}
