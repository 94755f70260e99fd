package jobs_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"

	"tidings/gateway-ws/jobs"
	"tidings/infra/fnhost"
	"tidings/lib/fn"
	"tidings/lib/testenv"
)

// A job's retries follow invoke.Retryable: a 408 (the function never got
// the body, so never acted) and a 501 (no verdict on the request) are
// tried again, a 404 (a verdict on the request) is final.
func TestJobRetriesFollowTheInvokersJudgement(t *testing.T) {
	rd := testenv.NewRedis(t)
	var lateCalls, unreadableCalls atomic.Int32
	fns := map[string]fnhost.Function{
		"late-body": {Handler: fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
			if lateCalls.Add(1) == 1 {
				return fn.Response{}, fn.Errorf(http.StatusRequestTimeout, "request_timeout", "request body not received in time")
			}
			return fn.JSON(200, map[string]bool{"ok": true})
		})},
		"unreadable": {Handler: fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
			if unreadableCalls.Add(1) == 1 {
				return fn.Response{}, fn.Errorf(http.StatusNotImplemented, "not_implemented", "unsupported transfer encoding")
			}
			return fn.JSON(200, map[string]bool{"ok": true})
		})},
		"not-found": {Handler: fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
			return fn.Response{}, fn.Errorf(http.StatusNotFound, "not_found", "no such thing")
		})},
	}
	q, err := jobs.New(rd.Client, host(t, fns), tokens(), testConfig(rd.Prefix, &events{}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, q)
	a := serve(t, q)
	ann := user(t, 7)
	enqueue := func(function string) string {
		id, err := q.Enqueue(context.Background(), 7, function, json.RawMessage(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	late, unreadable, notFound := enqueue("late-body"), enqueue("unreadable"), enqueue("not-found")

	if job := a.waitStatus(late, ann, jobs.Worked); job["attempts"] != 2.0 {
		t.Errorf("job answered 408 once: %v, want worked on attempt 2", job)
	}
	if job := a.waitStatus(unreadable, ann, jobs.Worked); job["attempts"] != 2.0 {
		t.Errorf("job answered 501 once: %v, want worked on attempt 2", job)
	}
	job := a.waitStatus(notFound, ann, jobs.Failed)
	if e, _ := job["error"].(map[string]any); job["attempts"] != 1.0 || e["status"] != 404.0 {
		t.Errorf("job answered 404: %v, want failed after 1 attempt (a final answer)", job)
	}
}
