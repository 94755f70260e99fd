package jobs_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"tidings/functions"
	genavatar "tidings/functions/gen-avatar"
	"tidings/gateway-ws/jobs"
	"tidings/infra/fnhost"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/testenv"
)

// avatarHost serves the real gen-avatar, built by functions.New.
func avatarHost(t *testing.T) map[string]fnhost.Function {
	t.Helper()
	h, err := functions.New("gen-avatar", &functions.Deps{Config: config.Config{InternalKey: internalKey}})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]fnhost.Function{"gen-avatar": {Handler: h, Limits: fn.Limits{Timeout: 5 * time.Second, MaxInflight: 8}}}
}

func TestJobLivesAcceptedToWorkedAndIsGoneAfterItsTTL(t *testing.T) {
	rd := testenv.NewRedis(t)
	ev := &events{}
	cfg := testConfig(rd.Prefix, ev)
	cfg.TTL = time.Second
	q, err := jobs.New(rd.Client, host(t, avatarHost(t)), tokens(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, q)
	a := serve(t, q)
	ann, bob := user(t, 1), user(t, 2)

	status, out, header := a.do(http.MethodPost, "/api/jobs/gen-avatar", ann, `{"seed":"ann@example.test","size":64}`)
	id, _ := out["id"].(string)
	if status != http.StatusAccepted || id == "" || header.Get("Location") != "/api/jobs/"+id {
		t.Fatalf("POST answered %d %v (Location %q), want 202 {id}", status, out, header.Get("Location"))
	}
	if status, out := a.job(id, ann); status != 200 || !slices.Contains([]string{"accepted", "working", "worked"}, out["status"].(string)) {
		t.Fatalf("GET right after: %d %v", status, out)
	}
	if status, out := a.job(id, bob); status != 404 || errorCode(out) != "not_found" {
		t.Errorf("another user's GET: %d %v, want 404", status, out)
	}

	job := a.waitStatus(id, ann, jobs.Worked)
	if job["function"] != "gen-avatar" || job["attempts"] != 1.0 || job["error"] != nil || job["created_at"] == nil || job["updated_at"] == nil {
		t.Errorf("worked job %v", job)
	}
	result, _ := job["result"].(map[string]any)
	if result["content_type"] != "image/png" {
		t.Fatalf("result %v, want {content_type: image/png, body_base64}", result)
	}
	body, err := base64.StdEncoding.DecodeString(result["body_base64"].(string))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := genavatar.NewRenderer().Render("ann@example.test", 64)
	if !bytes.Equal(body, want) {
		t.Error("the stored PNG differs from gen-avatar's rendering of the same seed and size")
	}
	if img, err := png.Decode(bytes.NewReader(body)); err != nil || img.Bounds().Dx() != 64 {
		t.Errorf("stored PNG: %v", err)
	}
	// Events follow the stored status, so the last may land just after the
	// API shows it.
	testenv.Eventually(t, "the worked event", 200, func() bool { return len(ev.of(id)) >= 3 })
	got := statuses(ev.of(id))
	if !slices.Equal(got, []jobs.Status{jobs.Accepted, jobs.Working, jobs.Worked}) {
		t.Errorf("events %v, want accepted, working, worked", got)
	}
	if last := ev.of(id)[len(got)-1]; last.Result == nil {
		t.Error("the worked event carries no result")
	}

	testenv.Eventually(t, "the record to expire after its TTL", 200, func() bool {
		status, _ := a.job(id, ann)
		return status == http.StatusNotFound
	})
	if _, out := a.job(id, ann); errorCode(out) != "not_found" {
		t.Errorf("after the TTL: %v, want the not_found error shape", out)
	}
}

func TestJobAPIRefusesBadInput(t *testing.T) {
	rd := testenv.NewRedis(t)
	cfg := testConfig(rd.Prefix, &events{})
	cfg.MaxPayloadBytes = 256
	q, err := jobs.New(rd.Client, host(t, avatarHost(t)), tokens(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := serve(t, q)
	ann := user(t, 1)
	for _, c := range []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"no token", "POST", "/api/jobs/gen-avatar", "", `{"seed":"x"}`, 401, "unauthorized"},
		{"forged token", "POST", "/api/jobs/gen-avatar", "not-a-jwt", `{"seed":"x"}`, 401, "unauthorized"},
		{"no token on GET", "GET", "/api/jobs/0123456789abcdef0123456789abcdef", "", "", 401, "unauthorized"},
		{"internal function", "POST", "/api/jobs/send-mail", ann, `{}`, 404, "not_found"},
		{"unknown function", "POST", "/api/jobs/mine-bitcoin", ann, `{}`, 404, "not_found"},
		{"malformed JSON", "POST", "/api/jobs/gen-avatar", ann, `{"seed":`, 400, "bad_request"},
		{"not an object", "POST", "/api/jobs/gen-avatar", ann, `["seed"]`, 400, "bad_request"},
		{"nested value for a GET function", "POST", "/api/jobs/gen-avatar", ann, `{"seed":{"a":1}}`, 400, "bad_request"},
		{"null value for a GET function", "POST", "/api/jobs/gen-avatar", ann, `{"seed":null}`, 400, "bad_request"},
		{"payload too large", "POST", "/api/jobs/gen-avatar", ann, `{"seed":"` + strings.Repeat("x", 300) + `"}`, 413, "too_large"},
		{"malformed id", "GET", "/api/jobs/../../etc", ann, "", 404, "not_found"},
		{"unknown id", "GET", "/api/jobs/0123456789abcdef0123456789abcdef", ann, "", 404, "not_found"},
		{"other path", "GET", "/api/jobs/a/b", ann, "", 404, "not_found"},
		{"wrong method", "DELETE", "/api/jobs/0123456789abcdef0123456789abcdef", ann, "", 405, "method_not_allowed"},
	} {
		status, out, _ := a.do(c.method, c.path, c.token, c.body)
		if status != c.status || errorCode(out) != c.code {
			t.Errorf("%s: %d %v, want %d %s", c.name, status, out, c.status, c.code)
		}
	}
	if stats, err := q.Stats(context.Background()); err != nil || len(stats.Functions) != 0 {
		t.Errorf("refused requests queued something: %+v %v", stats, err)
	}
}

func TestFailingJobsRetryWithBackoffThenFailIntoTheDeadLetterStream(t *testing.T) {
	rd := testenv.NewRedis(t)
	ev := &events{}
	var flakyCalls atomic.Int32
	answer := func(status int, code string) fn.Handler {
		return fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
			return fn.Response{}, fn.Errorf(status, code, "answered %d on purpose", status)
		})
	}
	fns := map[string]fnhost.Function{
		// Fails twice with 503, then answers: worked on the third attempt.
		"flaky": {Handler: fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
			if flakyCalls.Add(1) <= 2 {
				return fn.Response{}, fn.Errorf(503, "busy", "not now")
			}
			return fn.JSON(200, map[string]string{"got": string(req.Body)})
		})},
		"broken":  {Handler: answer(500, "boom")},      // always fails: retried until out of attempts
		"refuses": {Handler: answer(422, "bad_input")}, // a verdict: failed at once
	}
	q, err := jobs.New(rd.Client, host(t, fns), tokens(), testConfig(rd.Prefix, ev))
	if err != nil {
		t.Fatal(err)
	}
	run(t, q)
	a := serve(t, q)
	ann := user(t, 7)
	ctx := context.Background()
	enqueue := func(function, payload string) string {
		id, err := q.Enqueue(ctx, 7, function, json.RawMessage(payload))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	flaky, broken, refuses := enqueue("flaky", `{"n":1}`), enqueue("broken", ``), enqueue("refuses", `{}`)

	job := a.waitStatus(flaky, ann, jobs.Worked)
	if job["attempts"] != 3.0 || job["result"].(map[string]any)["got"] != `{"n":1}` {
		t.Errorf("flaky job %v, want worked on attempt 3 with the payload as body", job)
	}
	testenv.Eventually(t, "the flaky job's worked event", 200, func() bool { return len(ev.of(flaky)) >= 7 })
	if got := statuses(ev.of(flaky)); !slices.Equal(got, []jobs.Status{jobs.Accepted, jobs.Working, jobs.Pending, jobs.Working, jobs.Pending, jobs.Working, jobs.Worked}) {
		t.Errorf("flaky events %v", got)
	}

	job = a.waitStatus(broken, ann, jobs.Failed)
	e, _ := job["error"].(map[string]any)
	if job["attempts"] != 3.0 || e["code"] != "boom" || e["status"] != 500.0 {
		t.Errorf("broken job %v, want failed after 3 attempts with the function's error", job)
	}
	job = a.waitStatus(refuses, ann, jobs.Failed)
	if e, _ := job["error"].(map[string]any); job["attempts"] != 1.0 || e["code"] != "bad_input" {
		t.Errorf("refused job %v, want failed after 1 attempt (a 4xx is final)", job)
	}

	dead, err := rd.Client.XRange(ctx, q.DeadKey(), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range dead {
		ids = append(ids, m.Values["id"].(string))
	}
	slices.Sort(ids)
	want := []string{broken, refuses}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("dead-letter stream holds %v, want the broken and refused jobs %v", ids, want)
	}
	stats, err := q.Stats(ctx)
	if err != nil || stats.DeadLetters != 2 || stats.Delayed != 0 || len(stats.Functions) != 3 {
		t.Fatalf("stats %+v %v", stats, err)
	}
	for _, f := range stats.Functions {
		if f.Waiting != 0 || f.Running != 0 {
			t.Errorf("%s still has entries: %+v", f.Function, f)
		}
	}
}

func TestJobsRunWithinTheirFunctionsConcurrencyLimitAndTimeout(t *testing.T) {
	rd := testenv.NewRedis(t)
	var inflight, most atomic.Int32
	fns := map[string]fnhost.Function{
		"slow": {Handler: fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
			n := inflight.Add(1)
			defer inflight.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(30 * time.Millisecond)
			return fn.JSON(200, map[string]bool{"ok": true})
		})},
		// Answers only when the caller gives up.
		"hangs": {Handler: fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
			<-req.Context().Done()
			return fn.Response{}, req.Context().Err()
		})},
	}
	cfg := testConfig(rd.Prefix, &events{})
	cfg.Concurrency = 8
	cfg.Concurrencies = map[string]int{"slow": 2}
	cfg.Timeouts = map[string]time.Duration{"hangs": 100 * time.Millisecond}
	cfg.MaxAttempts = 2
	q, err := jobs.New(rd.Client, host(t, fns), tokens(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	run(t, q)
	a := serve(t, q)
	ann := user(t, 3)
	ctx := context.Background()
	var ids []string
	for range 8 {
		id, err := q.Enqueue(ctx, 3, "slow", nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	hangs, err := q.Enqueue(ctx, 3, "hangs", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		a.waitStatus(id, ann, jobs.Worked)
	}
	if m := most.Load(); m > 2 || m < 1 {
		t.Errorf("at most %d slow jobs ran at once, want 1 or 2 (the limit is 2)", m)
	}
	job := a.waitStatus(hangs, ann, jobs.Failed)
	if e, _ := job["error"].(map[string]any); e["code"] != "timeout" || job["attempts"] != 2.0 {
		t.Errorf("hanging job %v, want failed with code timeout after 2 attempts", job)
	}
}
