package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"tidings/lib/notification"
	"tidings/lib/twopc"
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

// replayPage is what one read of notify-since gives a feed: the events to
// send, oldest first, and whether more were left unread.
type replayPage struct {
	ids       []int64
	frames    [][]byte
	truncated bool
}

// readSince reads user's notifications after since (created at or after
// after, when set), at most limit, and encodes their events for topic
// with each one's unread count (see unreadCounts).
func (s *Server) readSince(ctx context.Context, topic string, user, since int64, after time.Time, limit int) (replayPage, error) {
	var got twopc.Since
	q := twopc.SinceQuery{User: user, Since: since, After: after, Limit: limit + 1}
	if err := s.calls.Call(ctx, "notify-since", q, &got); err != nil {
		return replayPage{}, fmt.Errorf("read the notifications of user %d after %d: %w", user, since, err)
	}
	if len(got.Notifications) == 0 {
		return replayPage{}, nil
	}
	var read twopc.Unread
	if err := s.calls.Call(ctx, "counter-read", twopc.UnreadQuery{Users: []int64{user}}, &read); err != nil {
		return replayPage{}, fmt.Errorf("read the unread count of user %d: %w", user, err)
	}
	unread := unreadCounts(got.Notifications, got.UnackedNewer, read.Unread[user])
	page := replayPage{truncated: len(got.Notifications) > limit}
	for i, n := range got.Notifications[:min(limit, len(got.Notifications))] {
		frame, err := BroadcastFrame(topic, notification.EventName, n.Event(unread[i]))
		if err != nil {
			return replayPage{}, err
		}
		page.ids = append(page.ids, n.ID)
		page.frames = append(page.frames, frame)
	}
	return page, nil
}

// unreadCounts is the unread count each replayed notification carries:
// the user's count now (the counter's) less the notifications newer than
// it the user has not acked (those listed after it, and unackedNewer
// beyond the list). So the last one carries the count now, and each
// carries what a live event sent when it committed would have carried,
// had nothing been acked since. Never below 0.
func unreadCounts(list []notification.Notification, unackedNewer, now int64) []int64 {
	out := make([]int64, len(list))
	newer := unackedNewer
	for i := len(list) - 1; i >= 0; i-- {
		out[i] = max(now-newer, 0)
		if list[i].AckedAt == nil {
			newer++
		}
	}
	return out
}

// replay answers a join of user:<id> with since: it reads what the reply
// counts, the join having subscribed ch already (so every later
// notification reaches ch's feed, held). The reply's response is
// {"replayed": N} or {"replayed": N, "truncated": true}.
func (s *Server) replay(ctx context.Context, ch *channel) (replayPage, any, error) {
	page, err := s.readSince(ctx, ch.topic, ch.id, ch.feed.floor, time.Time{}, s.cfg.ReplayMax)
	if err != nil {
		return replayPage{}, nil, err
	}
	type replayed struct {
		Replayed  int  `json:"replayed"`
		Truncated bool `json:"truncated,omitempty"`
	}
	return page, replayed{Replayed: len(page.ids), Truncated: page.truncated}, nil
}

// drain sends the page a join read, after the ok reply, then what fills
// and the live frames held meanwhile need (see fill). It runs on its own
// goroutine and ends with the socket.
func (s *Server) drain(ch *channel, page replayPage) {
	f := ch.feed
	s.send(ch, page)
	if page.truncated {
		// The client pages the rest with list-notifications: the feed
		// goes on from the last replayed, held frames first.
		f.mu.Lock()
		f.floor = max(f.floor, page.ids[len(page.ids)-1])
		f.above = slices.DeleteFunc(f.above, func(id int64) bool { return id <= f.floor })
		f.mu.Unlock()
	}
	s.finishFill(ch)
}

// send marks and queues a page's frames, waiting for room in the socket's
// queue: a replay may be longer than the queue.
func (s *Server) send(ch *channel, page replayPage) {
	f := ch.feed
	for i, id := range page.ids {
		if ch.closed() {
			return
		}
		f.mu.Lock()
		fresh := !f.sent(id)
		if fresh {
			f.mark(id)
		}
		f.mu.Unlock()
		if fresh && !ch.conn.enqueuePaced(page.frames[i]) {
			return
		}
	}
}

// finishFill ends a feed's fill: it reads PostgreSQL again while refill
// is asked, then sends the held live frames not sent yet, until none is
// held, and lets live frames through again.
func (s *Server) finishFill(ch *channel) {
	f := ch.feed
	for {
		if ch.conn.killed() || ch.closed() {
			return
		}
		f.mu.Lock()
		if f.refill {
			f.refill = false
			f.mu.Unlock()
			s.readAll(ch)
			continue
		}
		held := f.held
		f.held = nil
		if len(held) == 0 {
			f.filling = false
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		for _, h := range held {
			s.send(ch, replayPage{ids: []int64{h.id}, frames: [][]byte{h.frame}})
		}
	}
}

// readAll sends every notification of ch's user after what its feed has
// sent, a page at a time. A read that fails is retried with backoff while
// the socket lives: the frames it stands for are in PostgreSQL only.
func (s *Server) readAll(ch *channel) {
	f := ch.feed
	f.mu.Lock()
	cursor, after := f.floor, f.after
	f.mu.Unlock()
	wait := brokerBackOff()
	for {
		ctx, cancel := context.WithTimeout(ch.conn.ctx, s.cfg.JoinTimeout)
		page, err := s.readSince(ctx, ch.topic, ch.id, cursor, after, twopc.MaxSince-1)
		cancel()
		if err != nil {
			if ch.conn.killed() || ch.closed() {
				return
			}
			d := wait.NextBackOff()
			s.log.Warn("gap fill: cannot read the notifications; retrying", "conn", ch.conn.id, "topic", ch.topic, "err", err, "backoff", d)
			select {
			case <-time.After(d):
			case <-ch.conn.ctx.Done():
				return
			}
			continue
		}
		wait.Reset()
		s.send(ch, page)
		if !page.truncated {
			return
		}
		cursor = page.ids[len(page.ids)-1]
	}
}

// fillGaps makes every local member of a user topic read what it may have
// missed: the broker calls it once its subscription to the topic is
// confirmed again after its connection failed. A member already filling
// reads once more before it ends.
func (s *Server) fillGaps(topic string) {
	if kind, id := route(topic); kind != kindUser || id == 0 {
		return
	}
	for _, ch := range s.hub.membersOf(topic, 0) {
		f := ch.feed
		if f == nil {
			continue
		}
		f.mu.Lock()
		if f.filling {
			f.refill = true
			f.mu.Unlock()
			continue
		}
		f.filling, f.refill = true, true
		f.mu.Unlock()
		go func() {
			s.fills <- struct{}{}
			defer func() { <-s.fills }()
			s.finishFill(ch)
		}()
	}
}

// maxFills bounds the gap fills that read PostgreSQL at once, after a
// broker outage that touched every user channel of the replica.
const maxFills = 16

// enqueuePaced queues frame, first waiting while the socket's queue is
// half full; it reports false once the socket is closing.
func (c *conn) enqueuePaced(frame []byte) bool {
	limit := max(c.srv.cfg.SendQueue/2, 1)
	for {
		c.mu.Lock()
		if c.killed() {
			c.mu.Unlock()
			return false
		}
		if len(c.queue) < limit {
			c.mu.Unlock()
			c.enqueue(frame)
			return true
		}
		if c.room == nil {
			c.room = make(chan struct{}, 1)
		}
		room := c.room
		c.mu.Unlock()
		select {
		case <-room:
		case <-c.done:
			return false
		}
	}
}
