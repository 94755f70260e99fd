package coordinator

import (
	"context"
	"testing"

	sendmail "tidings/functions/send-mail"
	"tidings/lib/notification"
	"tidings/lib/testenv"
	"tidings/lib/twopc"
)

// fanout is what one publish to a topic of n subscribers cost in sizes.
type fanout struct {
	largestBody int64 // the largest function call body of the transaction (prepares, commits)
	largestRead int64 // the largest of every call, the live delivery's counter-reads included
	recordBytes int64 // what the transaction's keys hold in Redis (MEMORY USAGE, summed)
	payloadLen  int64 // the record's payload field (HSTRLEN)
}

// publishToSubscribers publishes once, through the coordinator, to a topic
// with n subscribers inserted with SQL on three separate databases, checks
// that it committed and reached every subscriber, and measures the sizes.
func publishToSubscribers(t *testing.T, n int) fanout {
	t.Helper()
	ctx := context.Background()
	h := newHarnessWith(t, testenv.NewDatabases(t), testenv.NewRedis(t), nil, nil, sendmail.Config{})
	dir := h.dbs.Directory.Pool
	owner, _ := testenv.User(t, dir, "owner@example.com")
	var topic int64
	if err := dir.QueryRow(ctx, `INSERT INTO topics (owner_id, name) VALUES ($1, 'popular') RETURNING id`, owner).Scan(&topic); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.Exec(ctx, `
		WITH fans AS (
			INSERT INTO users (email, name, password_hash)
			SELECT 'fan' || g || '@example.com', 'fan ' || g, 'not-a-hash' FROM generate_series(1, $2::int) g
			RETURNING id)
		INSERT INTO subscriptions (topic_id, user_id) SELECT $1, id FROM fans`, topic, n); err != nil {
		t.Fatal(err)
	}
	var last int64
	if err := dir.QueryRow(ctx, `SELECT max(user_id) FROM subscriptions WHERE topic_id = $1`, topic).Scan(&last); err != nil {
		t.Fatal(err)
	}

	res, err := h.coord.Publish(ctx, owner, topic, notification.Message{Title: "to everyone", Body: "hello"})
	if err != nil || res.Pending || res.Recipients != n {
		t.Fatalf("publish to %d subscribers: %+v %v, want committed for all", n, res, err)
	}
	var size fanout
	size.largestBody = h.host.largestTx.Load()
	for _, k := range h.keys(h.rd.Prefix + "tx:*") {
		b, err := h.rd.Client.MemoryUsage(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		size.recordBytes += b
	}
	if size.payloadLen, err = h.rd.Client.HStrLen(ctx, h.coord.records.key(res.TxID), "payload").Result(); err != nil || size.payloadLen == 0 {
		t.Fatalf("the record's payload: %d bytes (%v)", size.payloadLen, err)
	}

	events := h.delivered()
	size.largestRead = h.host.largestBody.Load()
	if len(events) != n {
		t.Errorf("%d subscribers got the notification live, want all %d", len(events), n)
	}
	got := false
	for _, e := range events {
		if e.topic == UserTopic(last) {
			got = e.payload.ID == res.NotificationID && e.payload.Unread == 1 && e.payload.Title == "to everyone"
		}
	}
	if !got {
		t.Errorf("subscriber %d did not get notification %d with unread 1", last, res.NotificationID)
	}
	h.settled()
	if rows := h.count(h.dbs.Persist, `SELECT count(*) FROM deliveries WHERE notification_id = $1`, res.NotificationID); rows != n {
		t.Errorf("%d deliveries stored, want %d", rows, n)
	}
	if sets := h.count(h.dbs.Directory, `SELECT count(*) FROM recipient_sets`); sets != 0 {
		t.Errorf("%d recipient sets left once the publish was delivered, want none", sets)
	}
	return size
}

// A topic of 20,000 subscribers publishes, commits and delivers like one
// of 10, and neither a function call's body nor the transaction's Redis
// record is any larger: the recipients travel as a set in the directory,
// never in a body or a record. (Before, the prepares carried every id:
// past about 12,700 subscribers the function host refused them, 413.)
func TestPublishToTwentyThousandSubscribersKeepsBodiesAndRecordsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("inserts 20,000 users")
	}
	small := publishToSubscribers(t, 10)
	large := publishToSubscribers(t, 20000)
	t.Logf("10 subscribers: %+v; 20,000: %+v", small, large)
	// The counts' digits ("10" and "20000") and the ids' are the only
	// difference a body or record may show.
	const digits = 16
	if large.largestBody > small.largestBody+digits {
		t.Errorf("the largest function call body grew from %d bytes (10 subscribers) to %d (20,000)", small.largestBody, large.largestBody)
	}
	if large.payloadLen > small.payloadLen+digits {
		t.Errorf("the record's payload grew from %d bytes to %d", small.payloadLen, large.payloadLen)
	}
	if large.recordBytes > small.recordBytes+2*digits {
		t.Errorf("the transaction's Redis keys grew from %d bytes to %d", small.recordBytes, large.recordBytes)
	}
	// The live delivery reads the counts a batch at a time: its bodies
	// grow up to a batch's ids, and no further.
	if bound := int64(twopc.MaxUnreadBatch*21 + 64); large.largestRead > bound {
		t.Errorf("a counter-read body of %d bytes, more than a batch's %d", large.largestRead, bound)
	}
	if limit := int64(64 << 10); large.largestRead > limit {
		t.Errorf("a function call body of %d bytes, over the function host's %d", large.largestRead, limit)
	}
}
