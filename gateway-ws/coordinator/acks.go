package coordinator

import (
	"context"
	"fmt"
	"time"

	"tidings/lib/redisx"
	"tidings/lib/twopc"
)

// The ack relay is the second phase of an ack: it carries the persist
// participant's ack outbox to the counter until each ack is applied.
// docs/architecture.md ("Acks") is the design and why it is safe for
// every replica to relay.

// ackAnswerTTL bounds how long a relayed count waits in Redis for the
// ack-notification call it answers (which waits ACK_WAIT at most).
const ackAnswerTTL = 30 * time.Second

// ackBatch is how many acks one relay step carries.
const ackBatch = twopc.MaxAcks

// CounterEventName is the channel event a user's new unread count is
// pushed as, with a CounterEvent.
const CounterEventName = "counter"

// CounterEvent is the payload of a counter event.
type CounterEvent struct {
	Unread int64 `json:"unread"`
}

// RunAckRelay relays acks until ctx ends: at once, whenever an
// ack-notification call publishes on twopc.AckWakeChannel, and every
// AckRelayInterval (which finds what a lost wake-up or a failed pass
// left). One pass runs at a time; wake-ups during a pass make one more.
func (c *Coordinator) RunAckRelay(ctx context.Context) {
	wake := make(chan struct{}, 1)
	go c.hearAcks(ctx, wake)
	tick := time.NewTicker(c.cfg.AckRelayInterval)
	defer tick.Stop()
	for {
		if _, err := c.RelayAcks(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("relaying acks failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-tick.C:
		}
	}
}

// hearAcks turns the messages on the wake channel into at most one
// pending wake-up, through Config.Watch or else a subscription of its own
// (go-redis resubscribes it after a lost connection). The ticker covers
// what is published while nobody listens.
func (c *Coordinator) hearAcks(ctx context.Context, wake chan<- struct{}) {
	channel := twopc.AckWakeChannel(c.cfg.Prefix)
	hear := func(string) {
		select {
		case wake <- struct{}{}:
		default: // a pass is owed already
		}
	}
	if c.cfg.Watch != nil {
		if err := c.cfg.Watch(ctx, channel, hear); err != nil {
			c.log.Warn("cannot hear ack wake-ups; relaying every interval only until the broker reconnects", "err", err)
		}
		return
	}
	sub := redisx.Subscribe(ctx, c.cfg.Redis, channel)
	defer func() { _ = sub.Close() }()
	messages := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-messages:
			if !ok {
				return
			}
			hear(m.Payload)
		}
	}
}

// RelayAcks relays the acks pending at the persist participant to the
// counter until none is left, and returns how many it relayed. Each step
// is retried with backoff for up to PhaseTwoTimeout; an ack whose step
// failed stays in the outbox for the next pass.
func (c *Coordinator) RelayAcks(ctx context.Context) (int, error) {
	var done []int64
	relayed := 0
	for {
		var pending twopc.Acks
		if err := c.relayStep(ctx, "notify-acks", twopc.AckQuery{Done: done, Limit: ackBatch}, &pending); err != nil {
			return relayed, err
		}
		if len(pending.Acks) == 0 {
			return relayed, nil
		}
		var counted twopc.Unread
		if err := c.relayStep(ctx, "counter-ack", pending, &counted); err != nil {
			return relayed, err
		}
		c.answerAcks(ctx, pending.Acks, counted.Unread)
		done = make([]int64, 0, len(pending.Acks))
		for _, a := range pending.Acks {
			done = append(done, a.ID)
		}
		relayed += len(pending.Acks)
		c.cfg.Metrics.AcksRelayed.Add(float64(len(pending.Acks)))
	}
}

// relayStep calls one end of the relay until it answers, for up to
// PhaseTwoTimeout.
func (c *Coordinator) relayStep(ctx context.Context, name string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.PhaseTwoTimeout)
	defer cancel()
	if err := c.retry(ctx, name, body, out); err != nil {
		return fmt.Errorf("ack relay: %w", err)
	}
	return nil
}

// answerAcks hands each applied ack's count to the ack-notification call
// that may be waiting for it, and pushes each user's new count to their
// channel. Both are best effort: the acks are applied already.
func (c *Coordinator) answerAcks(ctx context.Context, acks []twopc.Ack, unread map[int64]int64) {
	pipe := c.cfg.Redis.Pipeline()
	for _, a := range acks {
		key := twopc.AckAnswerKey(c.cfg.Prefix, a.ID)
		pipe.LPush(ctx, key, unread[a.UserID])
		pipe.Expire(ctx, key, ackAnswerTTL)
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RecordTimeout)
	defer cancel()
	if _, err := pipe.Exec(rctx); err != nil {
		c.log.Warn("cannot answer the acks' callers; they answer 202", "acks", len(acks), "err", err)
	}
	if c.cfg.Deliver == nil {
		return
	}
	if err := c.cfg.Deliver(ctx, UserBatch{Event: CounterEventName, Unread: unread}); err != nil {
		c.log.Warn("live counter updates failed", "users", len(unread), "err", err)
	}
}
