package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/infra/proc"
	"tidings/lib/config"
)

// RedisServer is a throwaway redis-server on a loopback port of its own,
// so a test can kill Redis and start it again without touching the server
// other tests share.
type RedisServer struct {
	t     testing.TB
	bin   string
	host  string // the address it binds and is reached at
	port  int
	netns string // the network namespace it runs in; "" for this one
	dir   string
	aof   bool
	cmd   *exec.Cmd
}

// StartRedisServer starts a redis-server without persistence on a free
// loopback port; it is killed when t ends.
func StartRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	return startRedisServer(t, false)
}

// StartPersistentRedisServer starts a redis-server configured as tidings
// runs it (proc.RedisPersistence: AOF, fsync on every write): a restart
// after Stop finds every acknowledged write again, unless Wipe is called.
func StartPersistentRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	return startRedisServer(t, true)
}

func startRedisServer(t testing.TB, aof bool) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is needed: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	s := &RedisServer{t: t, bin: bin, host: "127.0.0.1", port: port, dir: t.TempDir(), aof: aof}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *RedisServer) Addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// URL is the server's redis:// URL.
func (s *RedisServer) URL() string { return "redis://" + s.Addr() + "/0" }

// Client is a new client of the server, closed when the test ends, as
// another process would have; it fails fast while the server is down.
func (s *RedisServer) Client() redis.UniversalClient {
	c := newFailFastClient(s.t, s.URL())
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Start runs the server (again) on its port and waits until it answers.
func (s *RedisServer) Start() {
	s.t.Helper()
	args := []string{"--port", strconv.Itoa(s.port), "--bind", s.host, "--protected-mode", "no",
		"--save", "", "--dir", s.dir, "--loglevel", "warning"}
	if s.aof {
		args = append(args, proc.RedisPersistence...)
	} else {
		args = append(args, "--appendonly", "no")
	}
	if s.netns == "" {
		s.cmd = exec.Command(s.bin, args...)
	} else {
		s.cmd = exec.Command("ip", append([]string{"netns", "exec", s.netns, s.bin}, args...)...)
	}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	c := newFailFastClient(s.t, s.URL())
	defer c.Close()
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if i == 200 {
			s.t.Fatalf("redis-server on %s does not answer: %v", s.Addr(), err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL, as a crash) and waits until it is gone.
func (s *RedisServer) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Wipe deletes the server's files while it is stopped, so the next Start
// begins empty, as a Redis that lost its disk would.
func (s *RedisServer) Wipe() {
	s.t.Helper()
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
			s.t.Fatal(err)
		}
	}
}

// String names the server in failure messages.
func (s *RedisServer) String() string { return "redis-server " + s.Addr() }

// DownRedis is a client of a Redis server that was started and killed:
// what a process sees while Redis is down.
func DownRedis(t testing.TB) redis.UniversalClient {
	t.Helper()
	server := StartRedisServer(t)
	client := server.Client()
	server.Stop()
	return client
}

// newFailFastClient is a client with tidings's timeouts that does not
// retry, so a test sees a fault at once.
func newFailFastClient(t testing.TB, url string) redis.UniversalClient {
	t.Helper()
	rc, err := config.ParseRedis(url)
	if err != nil {
		t.Fatal(err)
	}
	return rc.NoRetries().Client()
}
