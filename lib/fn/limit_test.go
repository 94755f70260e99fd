package fn_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"tidings/lib/fn"
)

// TestLimitRefusesCallsBeyondMaxInflight holds MaxInflight calls inside the
// handler, then sends a burst: every extra call must get 429 and none a 500;
// once released, the held calls finish with 200.
func TestLimitRefusesCallsBeyondMaxInflight(t *testing.T) {
	const limit, burst = 3, 20
	release := make(chan struct{})
	entered := make(chan struct{}, limit)
	h := &fn.Adapter{Handler: fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
		entered <- struct{}{}
		<-release
		return fn.Response{StatusCode: http.StatusOK}, nil
	}), Limits: fn.Limits{MaxInflight: limit}}
	srv := httptest.NewServer(h)
	defer srv.Close()

	var held sync.WaitGroup
	heldStatus := make(chan int, limit)
	for i := 0; i < limit; i++ {
		held.Add(1)
		go func() {
			defer held.Done()
			heldStatus <- get(t, srv.URL)
		}()
	}
	for i := 0; i < limit; i++ {
		<-entered
	}
	var burstWG sync.WaitGroup
	statuses := make(chan int, burst)
	for i := 0; i < burst; i++ {
		burstWG.Add(1)
		go func() {
			defer burstWG.Done()
			statuses <- get(t, srv.URL)
		}()
	}
	burstWG.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusTooManyRequests {
			t.Errorf("call over the limit got %d, want 429", s)
		}
	}
	close(release)
	held.Wait()
	close(heldStatus)
	for s := range heldStatus {
		if s != http.StatusOK {
			t.Errorf("call within the limit got %d, want 200", s)
		}
	}
}

// TestLimitAnswers504WhenTheHandlerOutlivesItsTimeout uses a handler that
// returns only after its context is cancelled, so it always overruns.
func TestLimitAnswers504WhenTheHandlerOutlivesItsTimeout(t *testing.T) {
	finished := make(chan struct{})
	h := &fn.Adapter{Handler: fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
		<-req.Context().Done()
		close(finished)
		return fn.Response{}, req.Context().Err()
	}), Limits: fn.Limits{Timeout: 50 * time.Millisecond, MaxInflight: 1}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	if s := get(t, srv.URL); s != http.StatusGatewayTimeout {
		t.Fatalf("slow handler: got %d, want 504", s)
	}
	<-finished // the handler saw its context end
}

func get(t *testing.T, url string) int {
	resp, err := http.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
