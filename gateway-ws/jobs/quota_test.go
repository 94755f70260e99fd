package jobs_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"tidings/gateway-ws/jobs"
	"tidings/lib/config"
	"tidings/lib/ratelimit"
	"tidings/lib/testenv"
)

func TestEnqueuePastTheOwnersQuotaAnswers429(t *testing.T) {
	rd := testenv.NewRedis(t)
	cfg := testConfig(rd.Prefix, &events{})
	cfg.Limiter = ratelimit.New(rd.Client, rd.Prefix, time.Second, nil)
	cfg.Quota = ratelimit.Jobs(config.Limits{JobsPerUser: config.Rate{Count: 2, Per: time.Hour}})
	// No workers run: the jobs only need to be accepted.
	q, err := jobs.New(rd.Client, host(t, avatarHost(t)), tokens(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := serve(t, q)
	ann, bob := user(t, 1), user(t, 2)
	for i := range 2 {
		if status, out, _ := a.do(http.MethodPost, "/api/jobs/gen-avatar", ann, `{"seed":"a"}`); status != 202 {
			t.Fatalf("enqueue %d of 2: %d %v, want 202", i+1, status, out)
		}
	}
	status, out, header := a.do(http.MethodPost, "/api/jobs/gen-avatar", ann, `{"seed":"a"}`)
	if retry, err := strconv.Atoi(header.Get("Retry-After")); status != 429 || errorCode(out) != "rate_limited" || err != nil || retry < 1 {
		t.Fatalf("enqueue past the quota: %d %v Retry-After %q, want 429 rate_limited with whole seconds", status, out, header.Get("Retry-After"))
	}
	if status, out, _ := a.do(http.MethodPost, "/api/jobs/gen-avatar", bob, `{"seed":"b"}`); status != 202 {
		t.Fatalf("another owner: %d %v, want 202 (a quota of their own)", status, out)
	}
}
