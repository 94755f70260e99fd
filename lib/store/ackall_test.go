package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"tidings/lib/notification"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

// committed delivers n committed notifications to user, as a commit at
// persist does, and returns their ids, oldest first.
func committed(t *testing.T, dbs *testenv.Databases, user int64, n int) []int64 {
	t.Helper()
	ctx := context.Background()
	ids := make([]int64, n)
	for i := range ids {
		tx := fmt.Sprintf("tx-%d-%s", i, t.Name())
		id, err := store.PrepareNotificationFor(ctx, dbs.Persist.Pool, tx[:min(len(tx), 60)],
			notification.Draft{TopicID: 1, SenderID: 1, Message: notification.Message{Title: "t"}}, []int64{user})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.CommitNotification(ctx, dbs.Persist.Pool, tx[:min(len(tx), 60)]); err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	return ids
}

// Single acks and ack-alls of one user racing each other mark every
// delivery exactly once: the outbox's decrements add up to the deliveries,
// none is marked twice, and no call fails (a deadlock would be a 40P01).
func TestAckAllsAndSingleAcksRacingMarkEachDeliveryOnce(t *testing.T) {
	ctx := context.Background()
	dbs := testenv.NewDatabases(t)
	user, _ := testenv.User(t, dbs.Directory.Pool, "racer@example.com")
	ids := committed(t, dbs, user, 200)
	var wg sync.WaitGroup
	errs := make(chan error, 200+8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := store.RecordAckAll(ctx, dbs.Persist.Pool, user); err != nil {
				errs <- fmt.Errorf("ack-all: %w", err)
			}
		}()
	}
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := store.RecordAck(ctx, dbs.Persist.Pool, user, id); err != nil {
				errs <- fmt.Errorf("ack %d: %w", id, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	acks, err := store.PendingAcks(ctx, dbs.Persist.Pool, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var decrements int64
	for _, a := range acks {
		decrements += a.Deliveries
	}
	if decrements != int64(len(ids)) {
		t.Errorf("the outbox's %d acks lower the count by %d, want %d: each delivery marked once", len(acks), decrements, len(ids))
	}
	if n, err := store.UnreadDeliveries(ctx, dbs.Persist.Pool, user); err != nil || n != 0 {
		t.Errorf("%d deliveries left unread (%v), want 0", n, err)
	}
}

// An ack-all after everything was marked writes nothing and names the
// pending ack to wait for; once that is gone, none.
func TestAckAllWithNothingLeftWritesNothing(t *testing.T) {
	ctx := context.Background()
	dbs := testenv.NewDatabases(t)
	user, _ := testenv.User(t, dbs.Directory.Pool, "twice@example.com")
	committed(t, dbs, user, 3)
	first, unread, err := store.RecordAckAll(ctx, dbs.Persist.Pool, user)
	if err != nil || first == 0 || unread != 0 {
		t.Fatalf("first ack-all: ack %d unread %d %v, want an ack and unread 0", first, unread, err)
	}
	before := dbs.Snapshot(t)
	again, unread, err := store.RecordAckAll(ctx, dbs.Persist.Pool, user)
	if err != nil || again != first || unread != 0 {
		t.Errorf("second ack-all while the first is pending: ack %d unread %d %v, want the first's ack %d and unread 0", again, unread, err, first)
	}
	if after := dbs.Snapshot(t); after != before {
		t.Errorf("a second ack-all changed the database")
	}
	if err := store.ForgetAcks(ctx, dbs.Persist.Pool, []int64{first}); err != nil {
		t.Fatal(err)
	}
	if again, _, err := store.RecordAckAll(ctx, dbs.Persist.Pool, user); err != nil || again != 0 {
		t.Errorf("ack-all with nothing pending: ack %d %v, want 0", again, err)
	}
}

// list-notifications?unread=true reads the partial index of unacked
// deliveries (the statement carries its predicate), not the user's whole
// history.
func TestListingUnreadUsesThePartialIndex(t *testing.T) {
	ctx := context.Background()
	dbs := testenv.NewDatabases(t)
	user, _ := testenv.User(t, dbs.Directory.Pool, "index@example.com")
	ids := committed(t, dbs, user, 50)
	for _, id := range ids[:45] {
		if _, _, err := store.RecordAck(ctx, dbs.Persist.Pool, user, id); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := dbs.Persist.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	for _, set := range []string{`SET LOCAL enable_seqscan = off`, `SET LOCAL enable_bitmapscan = off`} {
		if _, err := tx.Exec(ctx, set); err != nil {
			t.Fatal(err)
		}
	}
	list, err := store.ListNotifications(ctx, tx, user, 10, 0, true)
	if err != nil || len(list) != 5 {
		t.Fatalf("unread listing: %d notifications %v, want the 5 unacked", len(list), err)
	}
	var scans int64
	if err := tx.QueryRow(ctx, `SELECT pg_stat_get_xact_numscans('deliveries_unread_idx'::regclass)`).Scan(&scans); err != nil {
		t.Fatal(err)
	}
	if scans == 0 {
		t.Errorf("the unread listing did not scan deliveries_unread_idx")
	}
}
