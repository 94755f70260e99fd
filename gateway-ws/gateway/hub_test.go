package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"tidings/lib/auth"
	"tidings/lib/testenv"
)

func TestBroadcastOnOneReplicaReachesSubscribersOnAnother(t *testing.T) {
	rds, db := testenv.NewRedis(t), testenv.NewDB(t)
	a := startGateway(t, testConfig(rds, db.URL))
	b := startGateway(t, testConfig(rds, db.URL))
	topicID, ownerID, subs := testenv.Topic(t, db.Pool, 2)
	topic := fmt.Sprintf("topic:%d", topicID)

	onA := dial(t, a, subs[0])
	onA.mustJoin(topic)
	onB := dial(t, b, subs[1])
	onB.mustJoin(topic)
	ownerOnA := dial(t, a, ownerID)
	ownerOnA.mustJoin(fmt.Sprintf("user:%d", ownerID))

	// Through B's Go API: the coordinator's path.
	if err := b.srv.Broadcast(context.Background(), topic, "notification", map[string]any{"id": 1, "title": "hello"}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`[null,null,%q,"notification",{"id":1,"title":"hello"}]`, topic)
	onA.expect(want)
	onB.expect(want)

	// Through B's internal HTTP endpoint: other services' path.
	status, body := postJSON(t, b.httpURL("/internal/broadcast"),
		fmt.Sprintf(`{"topic":"user:%d","event":"counter","payload":{"unread":3}}`, ownerID),
		http.Header{auth.InternalKeyHeader: {testInternalKey}})
	if status != http.StatusAccepted {
		t.Fatalf("internal broadcast: %d %s, want 202", status, body)
	}
	ownerOnA.expect(fmt.Sprintf(`[null,null,"user:%d","counter",{"unread":3}]`, ownerID))
}

func TestRedisChannelIsSubscribedPerTopicOnDemand(t *testing.T) {
	rds := testenv.NewRedis(t)
	a := startGateway(t, testConfig(rds, testenv.AdminURL()))
	b := startGateway(t, testConfig(rds, testenv.AdminURL()))
	channel := a.srv.broker.channel("user:11")
	subscribers := func() int64 { return subscribersOf(t, rds.Client, channel) }
	if n := subscribers(); n != 0 {
		t.Fatalf("before any join: %d Redis subscribers on %s, want 0", n, channel)
	}
	var onA []*client
	for range 3 {
		c := dial(t, a, 11)
		c.mustJoin("user:11")
		onA = append(onA, c)
	}
	if n := subscribers(); n != 1 {
		t.Fatalf("three sockets of one replica joined: %d Redis subscribers, want 1", n)
	}
	onB := dial(t, b, 11)
	onB.mustJoin("user:11")
	if n := subscribers(); n != 2 {
		t.Fatalf("sockets on two replicas joined: %d Redis subscribers, want 2", n)
	}
	for _, c := range append(onA, onB) {
		c.send("1", "99", "user:11", EventLeave, map[string]any{})
		c.expect(`["1","99","user:11","phx_reply",{"status":"ok","response":{}}]`)
		c.expect(`["1","1","user:11","phx_close",{}]`)
		c.heartbeat() // the leave, and so its UNSUBSCRIBE, has been handled
	}
	// UNSUBSCRIBE was sent before the replies above; Redis applies it when
	// it reads it, so poll a bounded number of times.
	n := subscribers()
	for i := 0; i < 100 && n != 0; i++ {
		time.Sleep(20 * time.Millisecond)
		n = subscribers()
	}
	if n != 0 {
		t.Fatalf("after every socket left: %d Redis subscribers, want 0", n)
	}
	if a.srv.Topics() != 0 || b.srv.Topics() != 0 {
		t.Fatalf("hubs still hold %d and %d topics after every leave", a.srv.Topics(), b.srv.Topics())
	}
}

func TestJoinIsConfirmedBeforeTheOkReply(t *testing.T) {
	// A broadcast sent right after the ok reply must arrive: the join waits
	// for Redis to confirm the subscription.
	rds := testenv.NewRedis(t)
	a := startGateway(t, testConfig(rds, testenv.AdminURL()))
	b := startGateway(t, testConfig(rds, testenv.AdminURL()))
	for i := range 20 {
		topic := fmt.Sprintf("user:%d", 100+i)
		c := dial(t, a, int64(100+i))
		c.mustJoin(topic)
		if err := b.srv.Broadcast(context.Background(), topic, "counter", map[string]int{"unread": i}); err != nil {
			t.Fatal(err)
		}
		c.expect(fmt.Sprintf(`[null,null,%q,"counter",{"unread":%d}]`, topic, i))
	}
}

func TestDeliveryResumesAfterTheRedisSubscriptionIsCut(t *testing.T) {
	rds := testenv.NewRedis(t)
	g := startGateway(t, testConfig(rds, testenv.AdminURL()))
	c := dial(t, g, 12)
	c.mustJoin("user:12")
	ctx := context.Background()
	channel := g.srv.broker.channel("user:12")
	numsub := func() int64 { return subscribersOf(t, rds.Client, channel) }

	// Fault: Redis drops this replica's pub/sub connections (as on a Redis
	// restart or a network cut) while a socket is joined: the one on one
	// server, those on the channel's node of a cluster.
	node := nodeOf(t, rds.Client, channel)
	list, err := node.ClientList(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " name=gateway-ws:"+rds.Prefix+" ") && (!strings.Contains(line, " sub=0 ") || strings.Contains(line, " ssub=") && !strings.Contains(line, " ssub=0 ")) {
			id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
			if err := node.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
				t.Fatalf("CLIENT KILL ID %s: %v", id, err)
			}
			killed++
		}
	}
	if killed != 1 && !rds.Cluster || killed == 0 {
		t.Fatalf("found %d pub/sub connections of the gateway to cut, want 1 (on a cluster, at least 1)", killed)
	}
	// Must hold afterwards: the broker reconnects and resubscribes by
	// itself, and the joined socket receives again.
	n := numsub()
	for i := 0; i < 250 && n != 1; i++ {
		time.Sleep(20 * time.Millisecond)
		n = numsub()
	}
	if n != 1 {
		t.Fatalf("after the cut: %d Redis subscribers on %s, want the gateway back", n, channel)
	}
	if err := g.srv.Broadcast(ctx, "user:12", "counter", map[string]int{"unread": 5}); err != nil {
		t.Fatal(err)
	}
	if rds.Cluster {
		// go-redis redials a cut cluster connection by itself, to any node,
		// and the broker then replaces it by one to the slot's master: a
		// frame published in between may be lost (the topic is reported
		// resumed for that), so publish until one arrives.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
					_ = g.srv.Broadcast(ctx, "user:12", "counter", map[string]int{"unread": 5})
				}
			}
		}()
	}
	c.expect(`[null,null,"user:12","counter",{"unread":5}]`)
}
