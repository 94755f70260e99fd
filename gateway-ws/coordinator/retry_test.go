package coordinator

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"tidings/lib/fn"
	"tidings/lib/notification"
)

// Fault: the counter's server answers the first two counter-commits 408
// (it did not receive the body in time, so the counter never acted). A
// 408 is worth a retry, not a refusal: the decided transaction must
// commit, not be rolled back.
func TestCommitAnswered408IsRetriedAndCommits(t *testing.T) {
	h := newHarness(t, nil, nil)
	owner, topic, _ := h.world()
	real := h.host.fns["counter-commit"].Handler
	var calls atomic.Int32
	h.replace("counter-commit", fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
		if calls.Add(1) <= 2 {
			return fn.Response{}, fn.Errorf(http.StatusRequestTimeout, "request_timeout", "request body not received in time")
		}
		return real.Handle(req)
	}))
	res, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "late body"})
	if err != nil || res.Pending {
		t.Fatalf("publish whose counter-commit was answered 408 twice: %+v %v, want committed", res, err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("counter-commit called %d times, want 3 (two 408s, then the commit)", n)
	}
	h.committedOnce(res.TxID)
}

// commitsDespite answers the first two calls of a decided commit's
// participant with status, then lets the real function answer: the
// transaction must still commit everywhere, with the invariant holding.
func commitsDespite(t *testing.T, participant string, status int) {
	h := newHarness(t, nil, nil)
	owner, topic, _ := h.world()
	real := h.host.fns[participant].Handler
	var calls atomic.Int32
	h.replace(participant, fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
		if calls.Add(1) <= 2 {
			return fn.Response{}, fn.Errorf(status, "unexpected", "an answer that is no verdict on the request")
		}
		return real.Handle(req)
	}))
	res, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "no verdict"})
	if err != nil || res.Pending {
		t.Fatalf("publish whose %s was answered %d twice: %+v %v, want committed", participant, status, res, err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%s called %d times, want 3 (two %ds, then the commit)", participant, n, status)
	}
	h.committedOnce(res.TxID)
}

// Fault: the counter answers the first two counter-commits 505, no verdict
// on the request. Before only a 4xx was final the coordinator took it for
// a refusal and rolled the decided transaction back everywhere.
func TestCommitAnswered505IsRetriedAndCommits(t *testing.T) {
	commitsDespite(t, "counter-commit", http.StatusHTTPVersionNotSupported)
}

// Fault: persist answers the first two notify-commits 302 (without a
// Location, so the client does not follow it). Taken for a refusal, the
// record was marked committed with the notification never committed.
func TestPersistCommitAnswered302IsRetriedAndCommits(t *testing.T) {
	commitsDespite(t, "notify-commit", http.StatusFound)
}
