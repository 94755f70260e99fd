package partition

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Partition lengths from issue 10: a short one that starts at the
// coordinator's decision write, and a long one under a running publisher.
const (
	atDecisionFor = 20 * time.Second
	underLoadFor  = 90 * time.Second
	// settleWithin bounds the wait for recovery to finish every record
	// after the heal: its production timings (30s stuck, every 10s) and
	// a phase two of up to 10s.
	settleWithin = 60 * time.Second
)

// partitionAtDecision cuts the server off just as the coordinator is about
// to record its commit decision (preparing -> committing) and heals it 20s
// later. The publish in flight may fail or succeed; either way, afterwards
// its record is finished, nothing is prepared or pending, the invariant
// holds, and publishing and fresh joins work within 5s of the heal.
func partitionAtDecision(t *testing.T, behind string) {
	t.Parallel()
	w := newWorld(t, behind)
	healed := make(chan time.Time, 1)
	hook := func() {
		w.part.Cut() // the fault: at the decision write
		time.AfterFunc(atDecisionFor, func() {
			w.part.Heal()
			healed <- time.Now()
		})
	}
	w.atDecision.Store(&hook)
	ok := w.publish(time.Minute) // the publish caught by the partition
	at := <-healed
	publish, join := w.recovery(at)
	open, invariant := w.settle(settleWithin)
	failed := 0
	if !ok {
		failed = 1
	}
	w.check(row{scenario: behind + " cut 20s at the decision write", publish: publish, join: join,
		okDuring: 1 - failed, failed: failed, open: open, invariant: invariant})
}

// partitionUnderLoad runs a publisher (one publish after another) while the
// server is cut off for 90s, then heals it. Afterwards nothing is left
// unfinished, the invariant holds, and publishing and fresh joins work
// within 5s of the heal.
func partitionUnderLoad(t *testing.T, behind string) {
	t.Parallel()
	w := newWorld(t, behind)
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the publisher
		defer wg.Done()
		w.publishing(stop, 30*time.Second, func(id int64) {
			if id != 0 {
				ok.Add(1)
			} else {
				failed.Add(1)
			}
		})
	}()
	time.Sleep(2 * time.Second)
	w.part.Cut() // the fault: 90s under load
	time.Sleep(underLoadFor)
	w.part.Heal()
	publish, join := w.recovery(time.Now())
	close(stop)
	wg.Wait()
	open, invariant := w.settle(settleWithin)
	w.check(row{scenario: behind + " cut 90s under a publisher", publish: publish, join: join,
		okDuring: int(ok.Load()), failed: int(failed.Load()), open: open, invariant: invariant})
}

func TestRedisPartitionAtTheDecisionWrite(t *testing.T) { partitionAtDecision(t, redisBehind) }

func TestPostgresPartitionAtTheDecisionWrite(t *testing.T) { partitionAtDecision(t, postgresBehind) }

func TestRedisPartitionUnderAPublisher(t *testing.T) { partitionUnderLoad(t, redisBehind) }

func TestPostgresPartitionUnderAPublisher(t *testing.T) { partitionUnderLoad(t, postgresBehind) }
