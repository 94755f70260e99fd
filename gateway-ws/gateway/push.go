package gateway

import (
	"context"
	"errors"
	"fmt"

	"tidings/lib/ratelimit"
)

// pushGuarded runs a push so that a bug in its handler costs only the
// channel, never the socket or the process: like a crashed Phoenix channel,
// it is dropped and the client gets phx_error, on which phoenix.js rejoins.
func (c *conn) pushGuarded(ch *channel, msg Message) {
	defer func() {
		if r := recover(); r != nil {
			c.srv.log.Error("push handler panicked", "conn", c.id, "user", c.userID, "topic", ch.topic, "event", msg.Event, "panic", fmt.Sprint(r))
			c.srv.hub.Leave(ch)
			delete(c.channels, ch.topic)
			c.enqueue(Message{JoinRef: ch.joinRef, Ref: ch.joinRef, Topic: ch.topic, Event: EventError}.Encode())
		}
	}()
	c.push(ch, msg)
}

// push handles a client event on a joined channel.
func (c *conn) push(ch *channel, msg Message) {
	if ch.kind != kindTopic || msg.Event != "publish" {
		c.reply(ch.joinRef, msg.Ref, ch.topic, StatusError, Reason{ReasonUnknownEvent})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.PublishTimeout)
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
		} else {
			c.srv.log.Warn("publish failed", "conn", c.id, "topic", ch.topic, "err", err)
		}
		c.reply(ch.joinRef, msg.Ref, ch.topic, StatusError, Reason{reason})
		return
	}
	c.reply(ch.joinRef, msg.Ref, ch.topic, StatusOK, resp)
}
