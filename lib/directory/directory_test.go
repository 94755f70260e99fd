package directory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/lib/cache"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

// replica is a Directory as another process would have it: its own Redis
// connection and its own near cache, whose memory lives an hour, so only an
// invalidation can make it see a change.
func replica(t *testing.T, db *testenv.DB, rd *testenv.Redis) *Directory {
	opts, _ := redis.ParseURL(rd.URL)
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	c, err := cache.New(cache.Config{Store: cache.Near, Prefix: rd.Prefix, LocalTTL: time.Hour, TTL: time.Hour}, client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return New(db.Pool, c, nil)
}

// topicAndReader is a fresh database and Redis prefix holding a topic and
// a second user who may subscribe to it.
func topicAndReader(t *testing.T) (*testenv.DB, *testenv.Redis, store.Topic, int64) {
	t.Helper()
	db := testenv.NewDB(t)
	rd := testenv.NewRedis(t)
	owner, _ := testenv.User(t, db.Pool, "owner@example.com")
	reader, _ := testenv.User(t, db.Pool, "reader@example.com")
	topic, err := store.CreateTopic(context.Background(), db.Pool, owner, "news", "")
	if err != nil {
		t.Fatal(err)
	}
	return db, rd, topic, reader
}

func TestSubscriberChangeOnOneReplicaIsSeenByAnother(t *testing.T) {
	db, rd, topic, reader := topicAndReader(t)
	ctx := context.Background()
	a, b := replica(t, db, rd), replica(t, db, rd)

	if ok, err := b.IsSubscriber(ctx, topic.ID, reader); err != nil || ok {
		t.Fatalf("before subscribing: %v %v", ok, err) // b now holds the empty list
	}
	if err := store.Subscribe(ctx, db.Pool, topic.ID, reader, false); err != nil {
		t.Fatal(err)
	}
	a.SubscriptionChanged(ctx, topic.ID, reader) // what the subscribe function does
	seen := false
	for i := 0; i < 100 && !seen; i++ { // bounded: invalidation travels through Redis
		seen, _ = b.IsSubscriber(ctx, topic.ID, reader)
		if !seen {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if !seen {
		t.Fatal("replica b never saw the new subscriber")
	}
	if subs, err := b.Subscribers(ctx, topic.ID); err != nil || len(subs) != 1 || subs[0] != reader {
		t.Errorf("subscribers %v (%v), want [%d]", subs, err, reader)
	}
	if got, err := b.TopicOwner(ctx, topic.ID); err != nil || got != topic.OwnerID {
		t.Errorf("owner %d (%v), want %d", got, err, topic.OwnerID)
	}
	if _, err := b.TopicOwner(ctx, topic.ID+100); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("owner of a missing topic: %v, want ErrNotFound", err)
	}
	if u, err := a.User(ctx, reader); err != nil || u.Email != "reader@example.com" {
		t.Errorf("user %+v (%v)", u, err)
	}
}

func TestWithoutACacheEveryReadGoesToTheDatabase(t *testing.T) {
	db := testenv.NewDB(t)
	ctx := context.Background()
	owner, _ := testenv.User(t, db.Pool, "owner@example.com")
	topic, _ := store.CreateTopic(ctx, db.Pool, owner, "news", "")
	d := New(db.Pool, nil, nil)
	if subs, err := d.Subscribers(ctx, topic.ID); err != nil || len(subs) != 0 {
		t.Fatalf("subscribers %v (%v)", subs, err)
	}
	_ = store.Subscribe(ctx, db.Pool, topic.ID, owner, false)
	if ok, err := d.IsSubscriber(ctx, topic.ID, owner); err != nil || !ok {
		t.Errorf("the new subscription is not read: %v %v", ok, err)
	}
}

func TestSubscriptionChangeIsHeardByEveryReplicaAfterItsCacheDroppedIt(t *testing.T) {
	db, rd, topic, reader := topicAndReader(t)
	ctx := context.Background()
	if err := store.Subscribe(ctx, db.Pool, topic.ID, reader, false); err != nil {
		t.Fatal(err)
	}
	a, b := replica(t, db, rd), replica(t, db, rd)
	if ok, err := b.IsSubscriber(ctx, topic.ID, reader); err != nil || !ok {
		t.Fatalf("before unsubscribing: %v %v", ok, err) // b now holds "subscribed" for an hour
	}
	// What b's watcher saw, and what b answered when it was called.
	heard := make(chan SubscriptionChange, 16)
	answers := make(chan bool, 16)
	if !b.WatchSubscriptions(func(c SubscriptionChange) {
		if !c.All {
			// A watcher must not block; this read is local memory or a
			// quick query, and a test can afford it.
			ok, _ := b.IsSubscriber(ctx, c.TopicID, c.UserID)
			answers <- ok
		}
		heard <- c
	}) {
		t.Fatal("WatchSubscriptions on a near cache reported false")
	}

	if err := store.Unsubscribe(ctx, db.Pool, topic.ID, reader); err != nil {
		t.Fatal(err)
	}
	a.SubscriptionChanged(ctx, topic.ID, reader) // what the unsubscribe function does
	deadline := time.After(10 * time.Second)
	for {
		select {
		case c := <-heard:
			if c.All {
				continue // the subscription's own confirmation may come first
			}
			if c != (SubscriptionChange{TopicID: topic.ID, UserID: reader}) {
				t.Fatalf("heard %+v, want topic %d user %d", c, topic.ID, reader)
			}
			if <-answers {
				t.Fatal("the watcher was called while the replica still answered \"subscribed\"")
			}
			return
		case <-deadline:
			t.Fatal("replica b never heard of the unsubscribe")
		}
	}
}

func TestWatchSubscriptionsNeedsANearCache(t *testing.T) {
	db := testenv.NewDB(t)
	if New(db.Pool, nil, nil).WatchSubscriptions(func(SubscriptionChange) {}) {
		t.Error("a directory without a cache claims to hear changes")
	}
	c, err := cache.New(cache.Config{Store: cache.Memory}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if New(db.Pool, c, nil).WatchSubscriptions(func(SubscriptionChange) {}) {
		t.Error("a directory on a memory cache claims to hear other processes' changes")
	}
}
