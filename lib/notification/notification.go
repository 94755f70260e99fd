// Package notification is tidings's notification, in each of the shapes
// it takes on its way: the Message a publisher sends, the Draft the
// two-phase commit prepares, the Notification a recipient lists, and the
// Event pushed to a recipient's user channel. The coordinator, the
// participants, the store and the gateway all use these types, so a field
// is added or a rule changed in one place.
package notification

import (
	"strings"
	"time"
	"unicode/utf8"

	"tidings/lib/fn"
)

// Limits on what a notification may carry.
const (
	MaxTitle = 200  // characters, after trimming
	MaxBody  = 5000 // characters
)

// Message is what a publisher sends: the `publish` push's payload and the
// body of POST /api/topics/<id>/notifications, {title, body?, email?}.
type Message struct {
	Title string `json:"title"`
	Body  string `json:"body"`
	Email bool   `json:"email"` // also mail it to the subscribers who asked for mail
}

// Check is the one validation of a notification's text: the coordinator
// runs it before any transaction begins and the persist participant
// before it stores anything. It trims the title, which must then be 1 to
// MaxTitle characters; the body is at most MaxBody. Text PostgreSQL would
// refuse (NUL, invalid UTF-8) is refused too. Errors are 400 *fn.Error.
func (m *Message) Check() error {
	if err := fn.CheckText("title", m.Title, 0); err != nil {
		return err
	}
	title := strings.TrimSpace(m.Title)
	if title == "" || utf8.RuneCountInString(title) > MaxTitle {
		return fn.BadRequest("title must be 1 to %d characters", MaxTitle)
	}
	if err := fn.CheckText("body", m.Body, MaxBody); err != nil {
		return err
	}
	m.Title = title
	return nil
}

// Draft is a notification being published: a checked Message from a
// sender on a topic, with how many recipients the coordinator fixed for
// it. The recipients themselves are a recipient set in the directory
// (lib/store, FixRecipients), which both participants read, so a Draft
// stays the same size whatever the topic's. It is the payload of the
// transaction record and, with the transaction id, of notify-prepare.
type Draft struct {
	TopicID  int64 `json:"topic_id"`
	SenderID int64 `json:"sender_id"`
	Message
	Recipients int `json:"recipients_count"`
}

// Direct reports whether d is a direct notification (POST
// /api/notifications): sent by the operator to users it names, on no
// topic and from no user, so both ids are 0 (null to clients, see Ref).
func (d *Draft) Direct() bool { return d.TopicID == 0 && d.SenderID == 0 }

// Check checks d as the persist participant receives it: Message.Check,
// and positive topic and sender ids, or both 0 (Direct). The recipient
// count is checked by twopc.CheckRecipients, which the counter shares.
func (d *Draft) Check() error {
	if err := d.Message.Check(); err != nil {
		return err
	}
	if !d.Direct() && (d.TopicID <= 0 || d.SenderID <= 0) {
		return fn.BadRequest("topic_id and sender_id must be positive, or both 0 for a direct notification")
	}
	return nil
}

// Notification is a committed notification as its recipient lists it.
type Notification struct {
	ID        int64      `json:"id"`
	TopicID   Ref        `json:"topic_id"`  // null for a direct notification
	SenderID  Ref        `json:"sender_id"` // null for a direct notification
	Title     string     `json:"title"`
	Body      string     `json:"body"`
	CreatedAt time.Time  `json:"created_at"`
	AckedAt   *time.Time `json:"acked_at"`
}

// Event is the payload of the `notification` event on a recipient's
// user:<id> channel: {id, topic_id, sender_id, title, body, created_at,
// unread}. Build it with NewEvent.
//
// The fields are declared in the order of their JSON names, so the
// encoding is byte for byte the one clients have always received (it was a
// map, which encoding/json writes with sorted keys).
type Event struct {
	Body      string `json:"body"`
	CreatedAt string `json:"created_at"` // RFC 3339, UTC, with the nanoseconds there are
	ID        int64  `json:"id"`
	SenderID  Ref    `json:"sender_id"` // null for a direct notification
	Title     string `json:"title"`
	TopicID   Ref    `json:"topic_id"` // null for a direct notification
	Unread    int64  `json:"unread"`   // the recipient's unread count, this notification included
}

// EventName is the channel event an Event is pushed as.
const EventName = "notification"

// NewEvent is the event telling a recipient, whose unread count is now
// unread, of notification id: d published at createdAt.
func NewEvent(id int64, d Draft, createdAt time.Time, unread int64) Event {
	return Event{
		ID: id, TopicID: Ref(d.TopicID), SenderID: Ref(d.SenderID), Title: d.Title, Body: d.Body,
		CreatedAt: createdAt.UTC().Format(time.RFC3339Nano), Unread: unread,
	}
}

// Event is the event telling n's recipient of n, whose unread count is
// unread: what a replay (gateway-ws, on a join with since) pushes, the
// same shape as the live one.
func (n Notification) Event(unread int64) Event {
	d := Draft{TopicID: int64(n.TopicID), SenderID: int64(n.SenderID), Message: Message{Title: n.Title, Body: n.Body}}
	return NewEvent(n.ID, d, n.CreatedAt, unread)
}
