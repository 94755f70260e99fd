package jobs_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/gateway-ws/jobs"
)

// ownRedis is a redis-server of this test's own, which it may kill and
// start again on the same port (the shared one on 6379 is never touched).
type ownRedis struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func startOwnRedis(t *testing.T) *ownRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is needed for the outage test: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &ownRedis{t: t, port: l.Addr().(*net.TCPAddr).Port, dir: t.TempDir()}
	l.Close()
	r.start(bin)
	t.Cleanup(r.stop)
	return r
}

func (r *ownRedis) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *ownRedis) start(bin string) {
	r.t.Helper()
	r.cmd = exec.Command(bin, "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr(), MaxRetries: -1})
	defer c.Close()
	eventually(r.t, "redis-server to answer on "+r.addr(), 200, func() bool {
		return c.Ping(context.Background()).Err() == nil
	})
}

func (r *ownRedis) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// Fault: the queue's Redis is killed (SIGKILL) after a first job worked,
// and started again, empty, on the same port. While it is down the API
// answers 503 "unavailable" and nothing crashes; once it is back the API
// accepts jobs again and the workers, which kept running, pick them up by
// themselves.
func TestJobQueueAnswers503WhileRedisIsDownAndRecoversAfter(t *testing.T) {
	r := startOwnRedis(t)
	client := redis.NewClient(&redis.Options{Addr: r.addr(), DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	t.Cleanup(func() { client.Close() })
	q, err := jobs.New(client, host(t, avatarHost(t)), tokens(), testConfig("tidings-outage-test:", &events{}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, q)
	a := serve(t, q)
	ann := user(t, 1)
	post := func() (int, map[string]any) {
		status, out, _ := a.do(http.MethodPost, "/api/jobs/gen-avatar", ann, `{"seed":"outage","size":16}`)
		return status, out
	}

	status, out := post()
	if status != http.StatusAccepted {
		t.Fatalf("before the outage: %d %v", status, out)
	}
	before := out["id"].(string)
	a.waitStatus(before, ann, jobs.Worked)

	r.stop() // the fault
	if status, out := post(); status != http.StatusServiceUnavailable || errorCode(out) != "unavailable" {
		t.Errorf("POST with Redis down: %d %v, want 503 unavailable", status, out)
	}
	if status, out := a.job(before, ann); status != http.StatusServiceUnavailable || errorCode(out) != "unavailable" {
		t.Errorf("GET with Redis down: %d %v, want 503 unavailable", status, out)
	}
	if _, err := q.Stats(context.Background()); err == nil {
		t.Error("Stats with Redis down reported no error")
	}

	r.start("redis-server")
	var after string
	eventually(t, "the API to accept jobs again", 200, func() bool {
		status, out := post()
		after, _ = out["id"].(string)
		return status == http.StatusAccepted
	})
	job := a.waitStatus(after, ann, jobs.Worked)
	if job["attempts"] != 1.0 {
		t.Errorf("the job after the outage: %v", job)
	}
}
