package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/store"
)

// Topic creates an owner, a topic of theirs and subscribers users
// subscribed to it (without mail), each user with an address of its own,
// and returns their ids.
func Topic(t testing.TB, pool *pgxpool.Pool, subscribers int) (topicID, ownerID int64, subs []int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := uniqueName()[:8]
	ownerID, _ = User(t, pool, fmt.Sprintf("owner-%s@example.test", run))
	topic, err := store.CreateTopic(ctx, pool, ownerID, "news", "")
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}
	for i := range subscribers {
		id, _ := User(t, pool, fmt.Sprintf("sub%d-%s@example.test", i+1, run))
		if err := store.Subscribe(ctx, pool, topic.ID, id, false); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		subs = append(subs, id)
	}
	return topic.ID, ownerID, subs
}
