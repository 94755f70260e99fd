package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"tidings/gateway-ws/coordinator"
	"tidings/lib/notification"
	"tidings/lib/testenv"
)

// One user batch, published once on one replica, reaches each of its users
// that has joined their channel on any replica, with their own unread count
// in exactly the frame a broadcast of their event alone would be; a user
// without a socket, and a socket of a user not in the batch, get nothing.
func TestDeliverUsersHandsEachReplicaItsMembersCopies(t *testing.T) {
	db, cfg := newDBConfig(t)
	a, b := startGateway(t, cfg), startGateway(t, cfg)
	users := make([]int64, 4)
	for i := range users {
		users[i], _ = testenv.User(t, db.Pool, fmt.Sprintf("batch%d@example.com", i))
	}
	onA, onB, absent, outside := users[0], users[1], users[2], users[3]
	clients := map[int64]*client{onA: dial(t, a, onA), onB: dial(t, b, onB), outside: dial(t, b, outside)}
	for user, c := range clients {
		c.mustJoin(coordinator.UserTopic(user))
	}
	event := notification.Event{ID: 7, TopicID: 3, SenderID: notification.Ref(outside), Title: "hello", CreatedAt: time.Now().UTC().Format(time.RFC3339Nano)}
	batch := coordinator.UserBatch{Event: notification.EventName, Notification: &event,
		Unread: map[int64]int64{onA: 3, onB: 5, absent: 1}}
	if err := a.srv.DeliverUsers(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	expect := func(user int64, batch coordinator.UserBatch) {
		t.Helper()
		want, err := BroadcastFrame(coordinator.UserTopic(user), batch.Event, batch.Payload(batch.Unread[user]))
		if err != nil {
			t.Fatal(err)
		}
		clients[user].expect(string(want))
	}
	expect(onA, batch)
	expect(onB, batch)
	// A replica hears batches in the order they were published: the next
	// batch, a counter update for the user outside the first, is the first
	// thing that user gets.
	counter := coordinator.UserBatch{Event: coordinator.CounterEventName, Unread: map[int64]int64{outside: 9}}
	if err := a.srv.DeliverUsers(context.Background(), counter); err != nil {
		t.Fatal(err)
	}
	expect(outside, counter)
}
