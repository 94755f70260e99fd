package gateway

import (
	"context"
	"errors"
	"time"
)

// The sweeper: every replica removes the entries of replicas that died
// (the node registry no longer lists them) and writes its own again when
// the store lost them.

// runSweeper removes dead replicas' entries and rewrites this replica's
// own when they were swept, every sweep interval until ctx ends.
func (p *presence) runSweeper(ctx context.Context) {
	tick := time.NewTicker(p.sweepEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		callCtx, cancel := context.WithTimeout(ctx, brokerCallTimeout)
		if err := p.sweep(callCtx); err != nil && ctx.Err() == nil {
			p.log.Warn("presence sweep failed; retrying at the next one", "every", p.sweepEvery, "err", err)
		}
		cancel()
	}
}

// sweep removes the entries of every node with entries that the registry
// does not list as alive, and queues this replica's own again when it
// finds itself gone from the store while it has members.
func (p *presence) sweep(ctx context.Context) error {
	live, err := p.nodes.Nodes(ctx)
	if err != nil {
		return err
	}
	alive := map[string]bool{p.store.node: true}
	for _, n := range live {
		alive[n.ID] = true
	}
	tracked, err := p.store.nodes(ctx)
	if err != nil {
		return err
	}
	self := false
	var errs []error
	for _, node := range tracked {
		if node == p.store.node {
			self = true
		}
		if alive[node] {
			continue
		}
		removed, err := p.store.sweep(ctx, node)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p.log.Info("presence of a dead replica removed", "dead_node", node, "entries", removed)
	}
	if !self {
		p.rewrite()
	}
	return errors.Join(errs...)
}

// rewrite queues every local entry again (with its join diff): the store
// lost them (this replica was swept while cut off from Redis, or Redis
// lost its data). Writing an entry that is there changes nothing.
func (p *presence) rewrite() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.entries) == 0 {
		return
	}
	p.log.Warn("this replica's presence is gone from Redis; writing it again", "entries", len(p.entries))
	for _, e := range p.entries {
		p.enqueueLocked(queuedOp{op: presenceOp{topic: e.topic, ref: e.ref, key: e.key, meta: e.meta, track: true}})
	}
}
