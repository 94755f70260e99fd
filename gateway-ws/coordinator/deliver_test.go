package coordinator

import (
	"context"
	"errors"
	"testing"

	"tidings/lib/notification"
)

// A commit that recovery repeats at the counter (the coordinator died
// after counter-commit) delivers the counter's counts all the same:
// delivery reads them from the counter (counter-read), whose database the
// gateway's own (the directory) is not, whoever finished the commit.
func TestRecoveredCommitDeliversTheCountersCount(t *testing.T) {
	h := newHarness(t, nil, func(at Fault) bool { return at == AfterCounterCommit })
	owner, topic, subs := h.world()
	if _, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "counted"}); !errors.Is(err, ErrCrashed) {
		t.Fatalf("publish: %v, want the injected crash after the counter's commit", err)
	}
	if n, err := h.newCoordinator(nil).Recover(context.Background()); err != nil || n != 1 {
		t.Fatalf("recovery finished %d (%v), want 1", n, err)
	}
	events := h.delivered()
	h.settled()
	got := map[string]int64{}
	for _, e := range events {
		got[e.topic] = e.payload.Unread
	}
	for _, sub := range subs {
		if n, ok := got[UserTopic(sub)]; !ok || n != 1 {
			t.Errorf("recovery delivered %v to subscriber %d, want the notification with unread 1", got, sub)
		}
	}
}
