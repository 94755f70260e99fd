package gateway

import (
	"context"
	"errors"
	"fmt"

	"tidings/lib/ratelimit"
)

// Each channel runs its client's events one after the other, off the
// socket's reader, as Phoenix runs each channel in a process of its own:
// a publish that takes seconds holds up neither the socket's heartbeats
// nor its other channels, and the replies of one channel still come in the
// order of its pushes. A channel's events wait in ch.pushes; a goroutine
// runs them only while there are some (runPushes), so an idle channel
// costs no goroutine. The reader handles heartbeats and joins itself, and
// puts a phx_leave behind the channel's earlier pushes so that their
// replies come before the leave's.

// maxPendingPushes is how many of a channel's pushes may be unanswered at
// once (the running one included); a push past it is answered
// {"reason":"busy"} at once and not run. The inbound rate limit bounds
// the socket's frames; this bounds what one channel holds while its
// pushes are slower than the client sends them.
const maxPendingPushes = 16

// ReasonBusy is the error reply to a push over maxPendingPushes.
const ReasonBusy = "busy"

// pendingPush is one client event waiting on its channel.
type pendingPush struct {
	run func(ctx context.Context)
	// always: run even once the channel is closed (a leave, which the
	// client is answered whatever happened); other pushes of a closed
	// channel are dropped, as a stopped Phoenix channel's mailbox is.
	always bool
}

// schedule queues a push of ch behind the channel's earlier ones. It is
// called by the frame handling only (one frame at a time, reader.go),
// which keeps it from racing with teardown's wait for the channel goroutines.
func (c *conn) schedule(ch *channel, p pendingPush) bool {
	ch.mu.Lock()
	if !p.always && len(ch.pushes) >= maxPendingPushes {
		ch.mu.Unlock()
		return false
	}
	ch.pushes = append(ch.pushes, p)
	start := len(ch.pushes) == 1
	ch.mu.Unlock()
	if start {
		c.pushers.Add(1)
		go c.runPushes(ch)
	}
	return true
}

// runPushes runs ch's pushes in order until none is left. The running one
// stays first in ch.pushes, so that it counts against maxPendingPushes
// and a push queued meanwhile does not start a second goroutine. Once the
// socket is closing nothing more is run: the client cannot be answered,
// and c.ctx has cancelled the running push.
func (c *conn) runPushes(ch *channel) {
	defer c.pushers.Done()
	for {
		ch.mu.Lock()
		for len(ch.pushes) > 0 && ch.state == channelClosed && !ch.pushes[0].always {
			ch.pushes = ch.pushes[1:]
		}
		if len(ch.pushes) == 0 || c.killed() {
			ch.pushes = nil
			ch.mu.Unlock()
			return
		}
		p := ch.pushes[0]
		ch.mu.Unlock()
		c.runGuarded(ch, p)
		ch.mu.Lock()
		ch.pushes[0] = pendingPush{}
		ch.pushes = ch.pushes[1:]
		ch.mu.Unlock()
	}
}

// runGuarded runs a push so that a bug in its handler costs only the
// channel, never the socket or the process: like a crashed Phoenix channel,
// it is dropped and the client gets phx_error, on which phoenix.js rejoins.
// The reader forgets the channel when it next sees it closed.
func (c *conn) runGuarded(ch *channel, p pendingPush) {
	defer func() {
		if r := recover(); r != nil {
			c.srv.log.Error("push handler panicked", "conn", c.id, "user", c.userID, "topic", ch.topic, "panic", fmt.Sprint(r))
			ch.crash()
		}
	}()
	p.run(c.ctx)
}

// queuePush puts a client event of a joined channel in the channel's
// queue, or answers busy.
func (c *conn) queuePush(ch *channel, msg Message) {
	queued := c.schedule(ch, pendingPush{run: func(ctx context.Context) { c.push(ctx, ch, msg) }})
	if !queued {
		c.reply(ch.joinRef, msg.Ref, ch.topic, StatusError, Reason{ReasonBusy})
	}
}

// queueLeave answers a phx_leave of ch after the replies to its earlier
// pushes. The topic's frames stop at once: a rejoin right after must not
// get them twice.
func (c *conn) queueLeave(ch *channel, msg Message) {
	delete(c.channels, ch.topic)
	c.srv.hub.Leave(ch)
	c.schedule(ch, pendingPush{always: true, run: func(context.Context) {
		c.reply(ch.joinRef, msg.Ref, ch.topic, StatusOK, nil)
		ch.close()
	}})
}

// push handles a client event on a joined channel; ctx ends when the
// socket closes.
func (c *conn) push(ctx context.Context, ch *channel, msg Message) {
	if msg.Binary != nil {
		c.reply(ch.joinRef, msg.Ref, ch.topic, StatusError, Reason{ReasonBinaryPayload})
		return
	}
	if ch.kind != kindTopic || msg.Event != "publish" {
		c.reply(ch.joinRef, msg.Ref, ch.topic, StatusError, Reason{ReasonUnknownEvent})
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.srv.cfg.PublishTimeout)
	defer cancel()
	// Only the topic's owner may publish: the coordinator checks it, for
	// the socket and HTTP alike, and refuses with ReasonUnauthorized.
	if c.srv.cfg.Publisher == nil {
		c.reply(ch.joinRef, msg.Ref, ch.topic, StatusError, Reason{ReasonUnavailable})
		return
	}
	resp, err := c.srv.cfg.Publisher.Publish(ctx, c.userID, ch.id, msg.Payload)
	var exceeded *ratelimit.Exceeded
	if errors.As(err, &exceeded) {
		c.reply(ch.joinRef, msg.Ref, ch.topic, StatusError, newQuotaReply(exceeded))
		return
	}
	if err != nil {
		var refused *Refused
		reason := ReasonUnavailable
		if errors.As(err, &refused) {
			reason = refused.Reason // the client's answer, not a failure: HTTP does not log it either
		} else if !c.killed() {
			c.srv.log.Warn("publish failed", "conn", c.id, "topic", ch.topic, "err", err)
		}
		c.reply(ch.joinRef, msg.Ref, ch.topic, StatusError, Reason{reason})
		return
	}
	c.reply(ch.joinRef, msg.Ref, ch.topic, StatusOK, resp)
}
