package gateway

import (
	"context"
	"errors"
)

func (c *conn) join(msg Message) {
	kind, id := route(msg.Topic)
	if kind == kindUnmatched {
		c.ignore(msg)
		return
	}
	since, hasSince, err := joinSince(msg.Payload)
	if err != nil && kind == kindUser {
		c.refuseJoin(msg, &Refused{ReasonInvalidSince})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.JoinTimeout)
	defer cancel()
	heard := c.srv.revoker.heard.Load()
	if err := authorizeJoin(ctx, c.srv.access, c.userID, kind, id, c.srv.log); err != nil {
		c.refuseJoin(msg, err)
		return
	}
	ch := &channel{conn: c, topic: msg.Topic, kind: kind, id: id, joinRef: msg.JoinRef}
	if kind == kindUser {
		ch.feed = newFeed(since, hasSince)
	}
	if err := c.srv.hub.Join(ctx, ch); err != nil {
		c.refuseJoin(msg, err)
		return
	}
	if c.srv.revoker.heard.Load() != heard {
		// A subscription changed while this join was being authorised,
		// perhaps this one, before the revoker could see this member:
		// the answer may be older than the change.
		if err := authorizeJoin(ctx, c.srv.access, c.userID, kind, id, c.srv.log); err != nil {
			c.srv.hub.Leave(ch)
			c.refuseJoin(msg, err)
			return
		}
	}
	var page replayPage
	var response any
	if hasSince && kind == kindUser {
		// Subscribed already: whatever commits from now on is held in the
		// feed, and what committed before is read here.
		if page, response, err = c.srv.replay(ctx, ch); err != nil {
			c.srv.hub.Leave(ch)
			c.refuseJoin(msg, err)
			return
		}
	}
	opened := ch.settle(func() { c.reply(msg.JoinRef, msg.Ref, msg.Topic, StatusOK, response) })
	if !opened {
		c.srv.hub.Leave(ch)
		c.refuseJoin(msg, &Refused{ReasonUnauthorized})
		return
	}
	if c.channels == nil {
		c.channels = map[string]*channel{}
	}
	c.channels[msg.Topic] = ch
	c.srv.metrics.Joins.WithLabelValues("ok").Inc()
	c.srv.presence.track(ctx, ch)
	if hasSince && kind == kindUser {
		c.pushers.Add(1)
		go func() {
			defer c.pushers.Done()
			c.srv.drain(ch, page)
		}()
	}
}

func (c *conn) refuseJoin(msg Message, err error) {
	var refused *Refused
	if errors.As(err, &refused) {
		c.srv.metrics.Joins.WithLabelValues("refused").Inc()
		c.reply(msg.JoinRef, msg.Ref, msg.Topic, StatusError, Reason{refused.Reason})
		return
	}
	c.srv.metrics.Joins.WithLabelValues("error").Inc()
	c.srv.log.Error("join failed", "conn", c.id, "user", c.userID, "topic", msg.Topic, "err", err)
	c.reply(msg.JoinRef, msg.Ref, msg.Topic, StatusError, Reason{ReasonUnavailable})
}
