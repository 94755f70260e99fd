package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"tidings/lib/notification"
)

// Replay and gap fill: a user:<id> channel's notifications reach its
// socket each exactly once, in id order where they come from PostgreSQL,
// whichever way they come: live through the hub, replayed on a join with
// {"since": id}, or filled in after the broker's pub/sub connection may
// have missed frames. Each channel of a user topic keeps a feed: which
// notification ids it has sent, and while a replay or fill reads the
// persist participant (notify-since), the live frames that arrive
// meanwhile, which go out after it, those already replayed dropped.

// ReasonInvalidSince is the error reply to a join of user:<id> whose
// payload's since is not a non-negative integer.
const ReasonInvalidSince = "invalid since"

// feedWindow is how many notification ids above its floor a feed
// remembers; past it the oldest half is forgotten (the floor rises). A
// notification is so sent once unless it comes more than about
// feedWindow notifications late, which commits in flight never are.
const feedWindow = 128

// maxHeld is how many live frames a feed holds while it fills; past it
// they are dropped and the fill reads PostgreSQL once more instead, where
// every one of them is (a frame is sent only once its notification is
// committed).
const maxHeld = 256

// feed is the delivery state of a user channel's notifications.
type feed struct {
	mu sync.Mutex
	// floor: every id up to it counts as sent (the join's since, or
	// forgotten by the window). above: the ids sent above it, sorted.
	floor int64
	above []int64
	// after: for a channel joined without since, its join's time: a fill
	// reads only notifications created since (it has no id to start
	// from). Zero otherwise.
	after time.Time
	// filling: a replay or fill is under way; live frames wait in held.
	// refill: read PostgreSQL once more before it ends (held overflowed,
	// or the broker may have missed frames again).
	filling bool
	refill  bool
	held    []heldFrame
}

type heldFrame struct {
	id    int64
	frame []byte
}

// sent reports whether id was sent already; f.mu is held.
func (f *feed) sent(id int64) bool {
	if id <= f.floor {
		return true
	}
	_, found := slices.BinarySearch(f.above, id)
	return found
}

// mark records id as sent; f.mu is held.
func (f *feed) mark(id int64) {
	i, found := slices.BinarySearch(f.above, id)
	if found {
		return
	}
	f.above = slices.Insert(f.above, i, id)
	if len(f.above) > feedWindow {
		drop := len(f.above) - feedWindow/2
		f.floor = f.above[drop-1]
		f.above = slices.Clone(f.above[drop:])
	}
}

// offerNotification sends the live frame of notification id to ch's
// socket unless it was sent already, or holds it while a replay or fill
// runs. Every delivery path calls it for a user:<id> notification.
func (ch *channel) offerNotification(id int64, frame []byte) {
	f := ch.feed
	if f == nil {
		ch.conn.enqueue(frame)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.filling {
		if len(f.held) >= maxHeld {
			f.held, f.refill = nil, true
			return
		}
		f.held = append(f.held, heldFrame{id, frame})
		return
	}
	if f.sent(id) {
		return
	}
	f.mark(id)
	// Under f.mu, so that two paths offering at once keep the order in
	// which they were marked.
	ch.conn.enqueue(frame)
}

// notificationID is the id of the notification a frame for topic carries,
// or 0 when it is no user channel's notification event.
func notificationID(topic string, frame []byte) int64 {
	if !strings.HasPrefix(topic, "user:") || !bytes.Contains(frame, []byte(`"`+notification.EventName+`"`)) {
		return 0
	}
	msg, err := Decode(frame)
	if err != nil || msg.Event != notification.EventName {
		return 0
	}
	var ev struct {
		ID int64 `json:"id"`
	}
	if json.Unmarshal(msg.Payload, &ev) != nil {
		return 0
	}
	return ev.ID
}

// joinSince reads the since of a join payload: ok is false when there is
// none, err when it is not a non-negative integer.
func joinSince(payload json.RawMessage) (since int64, ok bool, err error) {
	var p struct {
		Since json.RawMessage `json:"since"`
	}
	if len(payload) == 0 || payload[0] != '{' || json.Unmarshal(payload, &p) != nil || len(p.Since) == 0 || isNull(p.Since) {
		return 0, false, nil
	}
	if err := json.Unmarshal(p.Since, &since); err != nil || since < 0 {
		return 0, false, errors.New("since must be a non-negative integer")
	}
	return since, true, nil
}

// newFeed is the feed of a user channel joining now: from since, replaying
// first (live frames held until then), or, without since, from the join's
// time.
func newFeed(since int64, hasSince bool) *feed {
	if hasSince {
		return &feed{floor: since, filling: true}
	}
	return &feed{after: time.Now()}
}
