package gateway

import (
	"context"
	"fmt"
	"slices"
	"time"

	"tidings/lib/notification"
	"tidings/lib/twopc"
)

// The reading side of replay and gap fill (feed.go has the feed): what a
// join with since, or a broker resumption, reads from the persist
// participant (notify-since), and how it is sent without overflowing the
// socket's queue.

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
	unread := unreadCounts(got.Notifications, got.UnackedNewer, got.Unacked)
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
// the user's count now (now: their unacked committed notifications, read
// by notify-since in the same statement as unackedNewer, so that a publish
// committing meanwhile is in both or in neither) less the notifications newer than
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
	s.finishFill(ch, 0)
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
// held, and lets live frames through again. A read that failed does not
// hold live frames back: they go out, and the read is tried again later
// (retryFill), its notifications deduplicated against them.
func (s *Server) finishFill(ch *channel, attempt int) {
	f := ch.feed
	failed := false
	for {
		if ch.conn.killed() || ch.closed() {
			return
		}
		f.mu.Lock()
		if f.refill {
			f.refill = false
			f.mu.Unlock()
			if err := s.readAll(ch); err != nil {
				failed = true
				s.log.Warn("gap fill: cannot read the notifications; will retry", "conn", ch.conn.id, "topic", ch.topic, "err", err)
			}
			continue
		}
		held := f.held
		f.held = nil
		if len(held) == 0 {
			f.filling = false
			f.mu.Unlock()
			break
		}
		f.mu.Unlock()
		for _, h := range held {
			s.send(ch, replayPage{ids: []int64{h.id}, frames: [][]byte{h.frame}})
		}
	}
	if failed {
		s.retryFill(ch, attempt+1)
	}
}

// retryFill starts ch's fill again after a wait that grows with attempt
// (up to maxFillWait), while the socket lives.
func (s *Server) retryFill(ch *channel, attempt int) {
	wait := min(time.Second<<min(attempt, 5), maxFillWait)
	go func() {
		select {
		case <-time.After(wait):
			s.startFill(ch, attempt)
		case <-ch.conn.ctx.Done():
		}
	}()
}

// maxFillWait bounds the wait between a failed fill and the next.
const maxFillWait = 30 * time.Second

// readAll sends every notification of ch's user after what its feed has
// sent, a page at a time.
func (s *Server) readAll(ch *channel) error {
	f := ch.feed
	f.mu.Lock()
	cursor, after := f.floor, f.after
	f.mu.Unlock()
	for {
		ctx, cancel := context.WithTimeout(ch.conn.ctx, s.cfg.JoinTimeout)
		page, err := s.readSince(ctx, ch.topic, ch.id, cursor, after, twopc.MaxSince-1)
		cancel()
		if err != nil {
			return err
		}
		s.send(ch, page)
		if !page.truncated {
			return nil
		}
		cursor = page.ids[len(page.ids)-1]
	}
}

// fillGaps makes every local member of a user topic read what it may have
// missed: the broker calls it once its subscription to the topic is
// confirmed again after its connection failed, or (on a cluster) once the
// users' batch channel is.
func (s *Server) fillGaps(topic string) {
	if topic == s.broker.channel(usersTopic) {
		// The users' batches of notifications were lost meanwhile: any
		// user channel here may have missed some.
		for _, t := range s.hub.topicNames() {
			s.fillGaps(t)
		}
		return
	}
	if kind, id := route(topic); kind != kindUser || id == 0 {
		return
	}
	for _, ch := range s.hub.membersOf(topic, 0) {
		s.startFill(ch, 0)
	}
}

// startFill starts reading what ch may have missed, on a goroutine of its
// own, at most maxFills at once; a channel already filling reads once
// more before it ends.
func (s *Server) startFill(ch *channel, attempt int) {
	f := ch.feed
	if f == nil {
		return
	}
	f.mu.Lock()
	if f.filling {
		f.refill = true
		f.mu.Unlock()
		return
	}
	f.filling, f.refill = true, true
	f.mu.Unlock()
	go func() {
		select {
		case s.fills <- struct{}{}:
		case <-ch.conn.ctx.Done():
			return
		}
		defer func() { <-s.fills }()
		s.finishFill(ch, attempt)
	}()
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
