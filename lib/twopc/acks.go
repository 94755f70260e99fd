package twopc

import (
	"fmt"
	"strconv"

	"tidings/lib/fn"
	"tidings/lib/store"
)

// The ack relay's messages: gateway-ws carries the persist participant's
// ack outbox (notify-acks) to the counter (counter-ack); see
// docs/architecture.md ("Acks").

// Ack is one row of the persist participant's ack outbox, as store reads
// it: on the wire {id, user_id, notification_id, deliveries}. counter-ack
// needs id, user_id and deliveries (at least 1: a relay or notify-acks
// from before ack-all, which sends none, is refused rather than applied as
// a guess).
type Ack = store.Ack

// AckQuery asks notify-acks to forget the acks the counter applied (Done)
// and answer the next Limit (0: MaxAcks) still pending, oldest first.
type AckQuery struct {
	Done  []int64 `json:"done"`
	Limit int     `json:"limit,omitempty"`
}

// Acks is notify-acks' answer and counter-ack's request.
type Acks struct {
	Acks []Ack `json:"acks"`
}

// UnreadQuery asks counter-read for the unread counts of Users.
type UnreadQuery struct {
	Users []int64 `json:"users"`
}

// Unread answers counter-ack and counter-read: each user's unread count.
type Unread struct {
	Unread map[int64]int64 `json:"unread"`
}

// MaxAcks bounds the acks of one notify-acks or counter-ack call (and the
// ids of AckQuery.Done); the relay asks again for more.
const MaxAcks = 1000

// Check refuses a query with a limit or a Done list out of range.
func (q AckQuery) Check() error {
	if q.Limit < 0 || q.Limit > MaxAcks {
		return fn.BadRequest("limit must be 1 to %d (0: %d)", MaxAcks, MaxAcks)
	}
	if len(q.Done) > MaxAcks {
		return fn.BadRequest("done names at most %d acks", MaxAcks)
	}
	return positive("done", q.Done)
}

// Check refuses an empty, too long or malformed list of acks.
func (a Acks) Check() error {
	if len(a.Acks) == 0 || len(a.Acks) > MaxAcks {
		return fn.BadRequest("acks must name 1 to %d acks", MaxAcks)
	}
	for _, ack := range a.Acks {
		if ack.ID <= 0 || ack.UserID <= 0 || ack.NotificationID < 0 || ack.Deliveries <= 0 {
			return fn.BadRequest("each ack needs a positive id, user_id and deliveries")
		}
	}
	return nil
}

// Check refuses an empty or too long list of users, or one with a
// non-positive id.
func (q UnreadQuery) Check() error {
	if len(q.Users) == 0 || len(q.Users) > MaxUnreadBatch {
		return fn.BadRequest("users must name 1 to %d users", MaxUnreadBatch)
	}
	return positive("users", q.Users)
}

func positive(field string, ids []int64) error {
	for _, id := range ids {
		if id <= 0 {
			return fn.BadRequest("%s must hold positive ids", field)
		}
	}
	return nil
}

// AckWakeChannel is the Redis channel ack-notification publishes on after
// recording an ack, so the relays run at once rather than at their next
// tick. prefix is the Redis key prefix.
func AckWakeChannel(prefix string) string { return prefix + "acks" }

// AckAnswerKey is the Redis list the relay pushes an ack's user's unread
// count to once the counter applied it, and which ack-notification waits
// on (BLPOP) to answer with the counter's value.
func AckAnswerKey(prefix string, ackID int64) string {
	return prefix + "ack:" + strconv.FormatInt(ackID, 10)
}

// ParseUnread reads a count pushed to an AckAnswerKey.
func ParseUnread(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("unread count %q: %w", s, err)
	}
	return n, nil
}
