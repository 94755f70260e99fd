package gateway

import (
	"context"
	"time"
)

// The writer of a replica's presence: every change decided (presence.go)
// waits in presence.queue, in the order it was decided, and one goroutine
// writes whatever is waiting, up to presenceBatch changes per round trip.

func (p *presence) enqueueLocked(q queuedOp) {
	p.queue = append(p.queue, q)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// start runs the writer, and the sweeper until ctx ends; stop ends the
// writer once what is queued is written (or after brokerCallTimeout), for
// a graceful shutdown to run after the sockets are closed.
func (p *presence) start(ctx context.Context) (stop func()) {
	writerCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.runWriter(writerCtx)
	}()
	go p.runSweeper(ctx)
	return func() {
		cancel()
		<-done
	}
}

// runWriter writes the queued changes, a batch per round trip, until ctx
// ends; then it writes what is left once, within brokerCallTimeout.
func (p *presence) runWriter(ctx context.Context) {
	waits := brokerBackOff()
	for {
		select {
		case <-p.wake:
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.Background(), brokerCallTimeout)
			defer cancel()
			for p.pending() > 0 {
				if err := p.writeBatch(final); err != nil {
					p.log.Warn("presence changes not written at shutdown; peers sweep them after this replica's TTL", "err", err)
					return
				}
			}
			return
		}
		for p.pending() > 0 && ctx.Err() == nil {
			if err := p.writeBatch(ctx); err != nil {
				wait := waits.NextBackOff()
				p.log.Warn("presence write failed; retrying", "err", err, "backoff", wait)
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
				continue
			}
			waits.Reset()
		}
	}
}

func (p *presence) pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// writeBatch writes the oldest queued changes. When the write fails the
// joins waiting are answered with the error (their channels crash, which
// queues their leaves) and the rest is queued again, first.
func (p *presence) writeBatch(ctx context.Context) error {
	p.mu.Lock()
	n := min(len(p.queue), presenceBatch)
	batch := append([]queuedOp(nil), p.queue[:n]...)
	p.queue = p.queue[n:]
	p.mu.Unlock()
	if n == 0 {
		return nil
	}
	ops := make([]presenceOp, n)
	for i, q := range batch {
		ops[i] = q.op
	}
	callCtx, cancel := context.WithTimeout(ctx, brokerCallTimeout)
	states, err := p.store.write(callCtx, ops)
	cancel()
	var retry []queuedOp
	for i, q := range batch {
		switch {
		case q.waiter != nil && err != nil:
			q.waiter <- presenceResult{err: err}
		case q.waiter != nil:
			q.waiter <- presenceResult{state: states[i]}
		case err != nil:
			retry = append(retry, q)
		}
	}
	if len(retry) > 0 {
		p.mu.Lock()
		p.queue = append(retry, p.queue...)
		p.mu.Unlock()
	}
	return err
}
