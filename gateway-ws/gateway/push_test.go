package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"tidings/lib/testenv"
)

func TestPublishPushIsOwnerOnly(t *testing.T) {
	db, cfg := newDBConfig(t)
	g := startGateway(t, cfg)
	topicID, ownerID, subs := testenv.Topic(t, db.Pool, 1)
	topic := fmt.Sprintf("topic:%d", topicID)

	sub := dial(t, g, subs[0])
	jr := sub.mustJoin(topic)
	sub.send(jr, "5", topic, "publish", map[string]string{"title": "t", "body": "b"})
	sub.expect(fmt.Sprintf(`[%q,"5",%q,"phx_reply",{"status":"error","response":{"reason":"unauthorized"}}]`, jr, topic))

	// The owner's publish reaches the coordinator; with no participant
	// reachable (FaaS URL 127.0.0.1:1) it is rolled back and the owner told.
	owner := dial(t, g, ownerID)
	jr = owner.mustJoin(topic)
	owner.send(jr, "6", topic, "publish", map[string]string{"title": "t", "body": "b"})
	owner.expect(fmt.Sprintf(`[%q,"6",%q,"phx_reply",{"status":"error","response":{"reason":"aborted"}}]`, jr, topic))
}

// publisherFunc adapts a function to Publisher, standing in for the 2PC
// coordinator that a later issue plugs in.
type publisherFunc func(ctx context.Context, userID, topicID int64, payload json.RawMessage) (any, error)

func (f publisherFunc) Publish(ctx context.Context, userID, topicID int64, payload json.RawMessage) (any, error) {
	return f(ctx, userID, topicID, payload)
}

func TestPublishPushRepliesWithThePublishersAnswer(t *testing.T) {
	db, cfg := newDBConfig(t)
	var got string
	cfg.Publisher = publisherFunc(func(_ context.Context, userID, topicID int64, payload json.RawMessage) (any, error) {
		got = fmt.Sprintf("%d %d %s", userID, topicID, payload)
		if strings.Contains(string(payload), "refuse") {
			return nil, &Refused{Reason: "title required"}
		}
		return map[string]int64{"notification_id": 77}, nil
	})
	g := startGateway(t, cfg)
	topicID, ownerID, topic, owner, jr := joinOwnTopic(t, g, db)

	owner.sendRaw(fmt.Sprintf(`[%q,"8",%q,"publish",{"title":"t"}]`, jr, topic))
	owner.expect(fmt.Sprintf(`[%q,"8",%q,"phx_reply",{"status":"ok","response":{"notification_id":77}}]`, jr, topic))
	if want := fmt.Sprintf(`%d %d {"title":"t"}`, ownerID, topicID); got != want {
		t.Fatalf("publisher called with %q, want %q", got, want)
	}
	owner.sendRaw(fmt.Sprintf(`[%q,"9",%q,"publish",{"refuse":true}]`, jr, topic))
	owner.expect(fmt.Sprintf(`[%q,"9",%q,"phx_reply",{"status":"error","response":{"reason":"title required"}}]`, jr, topic))
}

func TestCrashingPushErrorsTheChannelNotTheSocket(t *testing.T) {
	db, cfg := newDBConfig(t)
	cfg.Publisher = publisherFunc(func(context.Context, int64, int64, json.RawMessage) (any, error) {
		panic("publisher bug")
	})
	g := startGateway(t, cfg)
	_, _, topic, owner, jr := joinOwnTopic(t, g, db)
	owner.send(jr, "8", topic, "publish", map[string]string{"title": "t"})
	owner.expect(fmt.Sprintf(`[%q,%q,%q,"phx_error",{}]`, jr, jr, topic))
	// The channel is gone, the socket is not, and a rejoin works.
	owner.send(jr, "9", topic, "publish", map[string]string{"title": "t"})
	owner.expect(fmt.Sprintf(`[null,"9",%q,"phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`, topic))
	owner.heartbeat()
	owner.mustJoin(topic)
}
