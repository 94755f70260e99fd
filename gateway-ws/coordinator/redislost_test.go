package coordinator

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"tidings/lib/notification"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

// recoverUntilSettled runs recovery as a restarted gateway does (at once,
// then every RecoveryInterval) until nothing is prepared or pending, no
// record is unfinished and the invariant holds; it fails t if that takes
// more than a bounded number of intervals.
func (h *harness) recoverUntilSettled(c *Coordinator) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.RunRecovery(ctx)
	var last error
	for i := 0; i < 100; i++ {
		if last = h.unsettled(); last == nil {
			return
		}
		time.Sleep(c.cfg.RecoveryInterval)
	}
	h.t.Fatalf("recovery did not finish every transaction: %v", last)
}

// unsettled is why the transactions are not all finished, or nil.
func (h *harness) unsettled() error {
	ctx := context.Background()
	if err := store.CheckInvariant(ctx, h.dbs.Persist.Pool, h.dbs.Counter.Pool); err != nil {
		return err
	}
	open, err := h.unfinished()
	if err != nil {
		return fmt.Errorf("count unfinished records: %w", err)
	}
	if open != 0 {
		return fmt.Errorf("%d transaction records unfinished", open)
	}
	return nil
}

func TestGatewayAndRedisLostTogetherFinishEveryTransaction(t *testing.T) {
	for _, c := range []struct {
		at        Fault
		empty     bool // Redis comes back without its data
		committed bool // the outcome recovery must reach
	}{
		{AfterPrepare, false, false},
		{AfterDecision, false, true},
		{AfterCounterCommit, false, true},
		// The record is lost: the participants alone decide. Until a
		// participant committed, the transaction rolls back.
		{AfterPrepare, true, false},
		{AfterDecision, true, false},
		{AfterCounterCommit, true, true},
	} {
		name := fmt.Sprintf("%s/redis-restarted-empty=%v", c.at, c.empty)
		t.Run(name, func(t *testing.T) {
			srv := testenv.StartPersistentRedisServer(t)
			rd := &testenv.Redis{Client: srv.Client(), Prefix: "tidings-test:", URL: srv.URL()}
			// Fault: at the fault point the gateway dies, and its Redis
			// is killed (SIGKILL) at the same moment.
			h := newHarnessOn(t, rd, nil, func(at Fault) bool {
				if at != c.at {
					return false
				}
				srv.Stop()
				return true
			})
			h.settings.PhaseTwoTimeout = 200 * time.Millisecond
			h.settings.RecoveryInterval = 100 * time.Millisecond
			owner, topic, subs := h.world()
			if _, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "lost together"}); !errors.Is(err, ErrCrashed) {
				t.Fatalf("publish: %v, want the injected crash", err)
			}
			if n := h.barriers(`SELECT count(*) FROM tx_barriers WHERE state = 'prepared'`); n == 0 {
				t.Fatal("nothing prepared at the crash: the fault hit no transaction in flight")
			}
			if c.empty {
				srv.Wipe()
			}
			srv.Start()
			h.recoverUntilSettled(h.newCoordinator(nil))

			h.expectOneOutcome(t, c.committed, subs[0])
		})
	}
}

func TestPublishWithRedisDownFailsBeforeAnyParticipantIsAsked(t *testing.T) {
	srv := testenv.StartRedisServer(t)
	h := newHarnessOn(t, &testenv.Redis{Client: srv.Client(), Prefix: "tidings-test:", URL: srv.URL()}, nil, nil)
	owner, topic, _ := h.world()
	srv.Stop() // the fault: Redis is down for the whole publish
	_, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "nowhere to record"})
	var refusal *Refusal
	var aborted *AbortedError
	if err == nil || errors.As(err, &refusal) || errors.As(err, &aborted) {
		t.Fatalf("publish with Redis down: %v, want a failure to start the transaction (503)", err)
	}
	if n := h.barriers(`SELECT count(*) FROM tx_barriers`); n != 0 {
		t.Errorf("%d barrier rows: a participant was asked with no record to finish it by", n)
	}
}

func TestCommittingRecordWhoseCounterRolledBackIsFinishedNotRetriedForever(t *testing.T) {
	var txID string
	h := newHarness(t, nil, func(at Fault) bool { return at == AfterDecision })
	owner, topic, _ := h.world()
	if _, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "contradicted"}); !errors.Is(err, ErrCrashed) {
		t.Fatalf("publish: %v, want the injected crash", err)
	}
	if err := h.dbs.Counter.Pool.QueryRow(context.Background(), `SELECT tx_id FROM tx_barriers LIMIT 1`).Scan(&txID); err != nil {
		t.Fatal(err)
	}
	// Fault: the counter was rolled back although the record says
	// committing (as when an unknown decision write was taken for a no).
	if err := h.inv.Call(context.Background(), "counter-rollback", map[string]string{"tx_id": txID}, nil); err != nil {
		t.Fatal(err)
	}
	n, err := h.newCoordinator(nil).Recover(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("recovery finished %d (%v), want 1 without error", n, err)
	}
	if s := h.txState(txID); s != Aborted {
		t.Errorf("record %q, want aborted (nothing had committed)", s)
	}
	h.settled()
}

// expectOneOutcome checks the one publish of a fault case ended as it
// must: committed at both participants (one notification, the
// subscriber's unread 1), or at neither.
func (h *harness) expectOneOutcome(t *testing.T, committed bool, subscriber int64) {
	t.Helper()
	want := 0
	if committed {
		want = 1
	}
	if n := h.count(h.dbs.Persist, `SELECT count(*) FROM notifications WHERE state = 'committed'`); n != want {
		t.Errorf("%d committed notifications, want %d", n, want)
	}
	if n := h.count(h.dbs.Counter, `SELECT coalesce((SELECT unread FROM counters WHERE user_id = $1), 0)`, subscriber); n != want {
		t.Errorf("unread of a subscriber %d, want %d", n, want)
	}
}
