package coordinator

import (
	"context"
	"testing"
	"time"

	"tidings/lib/notification"
)

// A record written before the participants field was dropped, still in
// Redis after an upgrade, still loads with everything recovery reads.
func TestRecordWithTheOldParticipantsFieldStillLoads(t *testing.T) {
	c, rd := newRecordsOnly(t)
	ctx := context.Background()

	draft := notification.Draft{TopicID: 7, SenderID: 3, Message: notification.Message{Title: "old"}}
	// The payload as it was before recipient sets: the ids themselves.
	payload := `{"topic_id":7,"sender_id":3,"title":"old","body":"","email":false,"recipients":[4,5]}`
	created := time.UnixMilli(time.Now().UnixMilli())
	// The hash exactly as the old create wrote it, then decided.
	if err := rd.Client.HSet(ctx, c.records.key("tx-old"), "state", Committing, "payload", payload,
		"participants", `["persist","counter"]`, "created_at", created.UnixMilli(),
		"updated_at", created.UnixMilli(), "notification_id", 42).Err(); err != nil {
		t.Fatal(err)
	}

	rec, err := c.records.load(ctx, "tx-old")
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if rec.ID != "tx-old" || rec.State != Committing || rec.NotificationID != 42 || !rec.CreatedAt.Equal(created) {
		t.Errorf("record %+v, want tx-old committing, notification 42, created %v", rec, created)
	}
	if rec.Payload.TopicID != draft.TopicID || rec.Payload.SenderID != draft.SenderID ||
		rec.Payload.Message != draft.Message {
		t.Errorf("payload %+v, want %+v", rec.Payload, draft)
	}
}
