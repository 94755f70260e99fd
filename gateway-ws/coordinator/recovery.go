package coordinator

import (
	"context"
	"errors"
	"time"
)

// RunRecovery recovers at once and then every RecoveryInterval until ctx
// ends.
func (c *Coordinator) RunRecovery(ctx context.Context) {
	tick := time.NewTicker(c.cfg.RecoveryInterval)
	defer tick.Stop()
	for {
		if n, err := c.Recover(ctx); err != nil {
			c.log.Warn("recovery failed; will retry", "err", err)
		} else if n > 0 {
			c.log.Info("recovered transactions", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Recover finishes every transaction left unfinished for longer than
// StuckAfter: committing ones commit; preparing and aborting ones roll back
// (presumed abort). It returns how many it finished.
func (c *Coordinator) Recover(ctx context.Context) (int, error) {
	ids, err := c.records.stuck(ctx, time.Now().Add(-c.cfg.StuckAfter))
	if err != nil {
		return 0, err
	}
	done := 0
	var errs []error
	for _, id := range ids {
		finished, err := c.recoverOne(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if finished {
			done++
			c.records.count(ctx, "recovered")
			c.cfg.Metrics.Transactions.WithLabelValues("recovered").Inc()
		}
	}
	return done, errors.Join(errs...)
}

// recoverOne finishes one transaction, reporting whether it had to.
func (c *Coordinator) recoverOne(ctx context.Context, id string) (bool, error) {
	rec, err := c.records.load(ctx, id)
	if errors.Is(err, errRecordGone) {
		return false, c.records.forget(ctx, id)
	}
	if err != nil {
		return false, err
	}
	log := c.log.With("tx", id, "state", rec.State)
	switch rec.State {
	case Preparing:
		var moved *errMoved
		err := c.records.transition(ctx, id, Preparing, Aborting)
		if errors.As(err, &moved) {
			return false, nil // its publisher decided meanwhile; it finishes it
		}
		if err != nil {
			return false, err
		}
		log.Info("recovery: rolling back a transaction that never decided")
		return true, c.finishRollback(ctx, rec, allParticipants)
	case Aborting:
		log.Info("recovery: finishing a rollback")
		return true, c.finishRollback(ctx, rec, allParticipants)
	case Committing:
		log.Info("recovery: finishing a commit")
		return true, c.finishCommit(ctx, rec)
	default: // final: only the open-set entry was left
		return false, c.records.forget(ctx, id)
	}
}
