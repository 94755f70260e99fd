package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"tidings/lib/directory"
)

// revoker ends live memberships whose right is gone. Every replica hears
// every subscription change (directory.WatchSubscriptions: the shared
// cache's invalidations on Redis, which the unsubscribe function sends
// anyway); each one checks its own members of that topic again and
// revokes those that may no longer join it: they get phx_close and no
// later broadcast of the topic.
type revoker struct {
	hub     *Hub
	access  Access
	timeout time.Duration // one check
	log     *slog.Logger

	// heard counts the changes heard so far. A join reads it before it
	// authorises and again once it is a member: a change heard in between
	// may have found no member to revoke, so the join checks again.
	heard   atomic.Uint64
	changes chan directory.SubscriptionChange
	// overflowed is set when a change found the queue full: the next check
	// is then of every membership.
	overflowed atomic.Bool
}

// revokeQueue is how many changes may wait to be checked; past it, they
// are merged into one check of every membership.
const revokeQueue = 1024

func newRevoker(hub *Hub, access Access, timeout time.Duration, log *slog.Logger) *revoker {
	return &revoker{hub: hub, access: access, timeout: timeout, log: log,
		changes: make(chan directory.SubscriptionChange, revokeQueue)}
}

// hear takes a change from the directory; it must not block.
func (r *revoker) hear(c directory.SubscriptionChange) {
	r.heard.Add(1)
	select {
	case r.changes <- c:
	default:
		r.overflowed.Store(true)
	}
}

// run checks the changes heard until ctx ends.
func (r *revoker) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-r.changes:
			if r.overflowed.Swap(false) {
				c.All = true
			}
			r.check(ctx, c)
		}
	}
}

// check asks again, once per user and topic, whether the members c
// concerns may stay, and revokes those that may not. When a question gets
// no answer (the database is down?), the rest of the check is given up and
// the whole of c is tried again after revokeRetry, for as long as there
// are members to check: questions that time out one after the other would
// hold up every other change.
func (r *revoker) check(ctx context.Context, c directory.SubscriptionChange) {
	var members []*channel
	if c.All {
		for _, topic := range r.hub.topicNames() {
			if kind, _ := route(topic); kind == kindTopic {
				members = append(members, r.hub.membersOf(topic, 0)...)
			}
		}
	} else {
		members = r.hub.membersOf(fmt.Sprintf("topic:%d", c.TopicID), c.UserID)
	}
	verdicts := map[directory.SubscriptionChange]error{}
	for _, ch := range members {
		m := directory.SubscriptionChange{TopicID: ch.id, UserID: ch.conn.userID}
		err, checked := verdicts[m]
		if !checked {
			cctx, cancel := context.WithTimeout(ctx, r.timeout)
			err = authorizeJoin(cctx, r.access, m.UserID, ch.kind, m.TopicID, r.log)
			cancel()
			verdicts[m] = err
		}
		var refused *Refused
		switch {
		case errors.As(err, &refused):
			ch.conn.revoke(ch)
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("memberships not checked after a subscription change; retrying",
				"topic", ch.topic, "user", m.UserID, "all", c.All, "retry_in", revokeRetry, "err", err)
			time.AfterFunc(revokeRetry, func() { r.hear(c) })
			return
		}
	}
}

// revokeRetry is how long a check that got no answer waits to be tried
// again.
const revokeRetry = time.Second
