package jobs_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/gateway-ws/jobs"
	"tidings/lib/testenv"
)

// Fault: the queue's Redis is killed (SIGKILL) after a first job worked,
// and started again, empty, on the same port. While it is down the API
// answers 503 "unavailable" and nothing crashes; once it is back the API
// accepts jobs again and the workers, which kept running, pick them up by
// themselves.
func TestJobQueueAnswers503WhileRedisIsDownAndRecoversAfter(t *testing.T) {
	r := testenv.StartRedisServer(t)
	client := redis.NewClient(&redis.Options{Addr: r.Addr(), DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
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

	r.Stop() // the fault
	if status, out := post(); status != http.StatusServiceUnavailable || errorCode(out) != "unavailable" {
		t.Errorf("POST with Redis down: %d %v, want 503 unavailable", status, out)
	}
	if status, out := a.job(before, ann); status != http.StatusServiceUnavailable || errorCode(out) != "unavailable" {
		t.Errorf("GET with Redis down: %d %v, want 503 unavailable", status, out)
	}
	if _, err := q.Stats(context.Background()); err == nil {
		t.Error("Stats with Redis down reported no error")
	}

	r.Start()
	var after string
	testenv.Eventually(t, "the API to accept jobs again", 200, func() bool {
		status, out := post()
		after, _ = out["id"].(string)
		return status == http.StatusAccepted
	})
	job := a.waitStatus(after, ann, jobs.Worked)
	if job["attempts"] != 1.0 {
		t.Errorf("the job after the outage: %v", job)
	}
}
