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
	if s := h.txState(res.TxID); s != Committed {
		t.Errorf("record state %q, want committed", s)
	}
	if n := h.count(`SELECT count(*) FROM notifications WHERE state = 'committed'`); n != 1 {
		t.Errorf("%d committed notifications, want 1", n)
	}
	h.settled()
}
