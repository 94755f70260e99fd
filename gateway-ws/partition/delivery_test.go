package partition

import (
	"encoding/json"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The partitions (issue 14, item 5): six cuts of 20 s each. The
// flags shorten a local run; the defaults are the issue's.
var (
	deliveryCuts   = flag.Int("partition.cuts", 6, "how many times TestRedisPartitionsLoseNoPublishOnAConnectedSocket cuts Redis off")
	deliveryCutFor = flag.Duration("partition.cut", 20*time.Second, "how long each of its cuts lasts")
)

// catchUpWithin bounds, after each heal, the wait for every publish
// answered 201 to have reached the subscriber: a commit left pending by
// the cut is finished by recovery (30 s stuck, every 10 s), then
// delivered.
const catchUpWithin = 60 * time.Second

// subscriberSocket is the subscriber's socket on user:<id>, joined
// without since (as phoenix.js joins by default), kept open by
// heartbeats; it counts each notification id it receives.
type subscriberSocket struct {
	mu     sync.Mutex
	got    map[int64]int
	closed error // why the socket ended, if it did
}

func (w *world) subscribe(t *testing.T) *subscriberSocket {
	ws, _, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://%s/socket/websocket?vsn=2.0.0&token=%s", w.gateway, w.subscriberToken), nil)
	if err != nil {
		t.Fatal(err)
	}
	topic := fmt.Sprintf("user:%d", w.subscriber)
	if err := ws.WriteJSON([]any{"1", "1", topic, "phx_join", map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	s := &subscriberSocket{got: map[int64]int{}}
	var writeMu sync.Mutex
	done := make(chan struct{})
	t.Cleanup(func() { close(done); _ = ws.Close() })
	go func() { // heartbeats, as phoenix.js sends them
		for ref := 2; ; ref++ {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Second):
			}
			writeMu.Lock()
			_ = ws.WriteJSON([]any{nil, fmt.Sprint(ref), "phoenix", "heartbeat", map[string]any{}})
			writeMu.Unlock()
		}
	}()
	go func() {
		for {
			var frame [5]json.RawMessage
			if err := ws.ReadJSON(&frame); err != nil {
				s.mu.Lock()
				s.closed = err
				s.mu.Unlock()
				return
			}
			var event string
			_ = json.Unmarshal(frame[3], &event)
			if event != "notification" {
				continue
			}
			var n struct {
				ID int64 `json:"id"`
			}
			_ = json.Unmarshal(frame[4], &n)
			s.mu.Lock()
			s.got[n.ID]++
			s.mu.Unlock()
		}
	}()
	return s
}

// tally compares what the socket received with the publishes answered
// 201: those not received, and those received more than once.
func (s *subscriberSocket) tally(published []int64) (missing, twice []int64, closed error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range published {
		switch n := s.got[id]; {
		case n == 0:
			missing = append(missing, id)
		case n > 1:
			twice = append(twice, id)
		}
	}
	return missing, twice, s.closed
}

// Redis is cut off (every packet dropped) deliveryCuts times for
// deliveryCutFor each while a publisher keeps publishing, and a
// subscriber's socket stays connected throughout. After each heal every
// publish answered 201 so far reaches that socket, exactly once: the
// live frames the broker's dead connection missed are filled in from
// PostgreSQL, and the coordinator delivers every commit whatever became
// of its record writes.
func TestRedisPartitionsLoseNoPublishOnAConnectedSocket(t *testing.T) {
	t.Parallel()
	w := newWorld(t, redisBehind)
	sub := w.subscribe(t)
	time.Sleep(time.Second) // the join's reply

	var mu sync.Mutex
	var published []int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the publisher
		defer wg.Done()
		w.publishing(stop, 10*time.Second, func(id int64) {
			if id != 0 {
				mu.Lock()
				published = append(published, id)
				mu.Unlock()
			}
		})
	}()
	defer func() { close(stop); wg.Wait() }()
	snapshot := func() []int64 {
		mu.Lock()
		defer mu.Unlock()
		return append([]int64(nil), published...)
	}

	for cut := 1; cut <= *deliveryCuts; cut++ {
		time.Sleep(2 * time.Second)
		w.part.Cut() // the fault
		time.Sleep(*deliveryCutFor)
		w.part.Heal()
		healed := time.Now()
		var missing, twice []int64
		var closed error
		var ids []int64
		for {
			ids = snapshot()
			missing, twice, closed = sub.tally(ids)
			if len(missing) == 0 || closed != nil || time.Since(healed) > catchUpWithin {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("cut %d of %v: %d publishes answered 201 so far; all received %v after the heal; missing %d, twice %d",
			cut, *deliveryCutFor, len(ids), time.Since(healed).Round(100*time.Millisecond), len(missing), len(twice))
		if closed != nil {
			t.Fatalf("cut %d: the subscriber's socket ended: %v (log %s)", cut, closed, w.log)
		}
		if len(missing) > 0 {
			t.Errorf("cut %d: %d publishes answered 201 never reached the connected subscriber within %v of the heal: %v (log %s)",
				cut, len(missing), catchUpWithin, missing, w.log)
		}
		if len(twice) > 0 {
			t.Errorf("cut %d: %d notifications reached the subscriber more than once: %v", cut, len(twice), twice)
		}
	}
}
