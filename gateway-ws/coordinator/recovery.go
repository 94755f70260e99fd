package coordinator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"tidings/gateway-ws/invoke"
	"tidings/lib/barrier"
	"tidings/lib/store"
	"tidings/lib/twopc"
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
// (presumed abort). Then it finishes the transactions a participant still
// holds prepared whose record is lost (see recoverInDoubt), and deletes
// the recipient sets nobody needs any more (sweepRecipientSets). It
// returns how many transactions it finished.
func (c *Coordinator) Recover(ctx context.Context) (int, error) {
	done, err := c.recoverRecorded(ctx)
	more, inDoubtErr := c.recoverInDoubt(ctx)
	return done + more, errors.Join(err, inDoubtErr, c.sweepRecipientSets(ctx))
}

// sweepBatch bounds the recipient sets one recovery pass looks at.
const sweepBatch = 100

// sweepRecipientSets deletes the recipient sets that their coordinator
// left behind (it died before deleting them): those fixed longer than
// StuckAfter + PhaseTwoTimeout ago (no publisher still prepares them)
// whose record is gone, or final for longer than PhaseTwoTimeout (the
// bound of the live delivery that reads the set). A participant never
// needs a set again once it prepared, or was fenced by a rollback; a
// record still unfinished keeps its set for recovery's commit to deliver.
func (c *Coordinator) sweepRecipientSets(ctx context.Context) error {
	ids, err := store.StaleRecipientSets(ctx, c.cfg.DB, c.cfg.StuckAfter+c.cfg.PhaseTwoTimeout, sweepBatch)
	if err != nil {
		return fmt.Errorf("sweep recipient sets: %w", err)
	}
	cutoff := time.Now().Add(-c.cfg.PhaseTwoTimeout)
	for _, id := range ids {
		done, err := c.records.finishedBefore(ctx, id, cutoff)
		if err != nil {
			return fmt.Errorf("sweep recipient sets: read the record of %s: %w", id, err)
		}
		if done {
			c.forgetRecipients(ctx, id)
		}
	}
	return nil
}

// recoverRecorded finishes the transactions whose records are stuck.
func (c *Coordinator) recoverRecorded(ctx context.Context) (int, error) {
	ids, err := c.records.stuck(ctx, time.Now().Add(-c.cfg.StuckAfter))
	done := 0
	errs := []error{err}
	for _, id := range ids {
		finished, err := c.recoverOne(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if finished {
			done++
			c.countRecovered(ctx)
		}
	}
	return done, errors.Join(errs...)
}

func (c *Coordinator) countRecovered(ctx context.Context) {
	c.records.count(ctx, "recovered")
	c.cfg.Metrics.Transactions.WithLabelValues("recovered").Inc()
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
		return true, c.finishRollback(ctx, rec, allRollbacks)
	case Aborting:
		log.Info("recovery: finishing a rollback")
		return true, c.finishRollback(ctx, rec, allRollbacks)
	case Committing:
		log.Info("recovery: finishing a commit")
		err := c.finishCommit(ctx, rec)
		var aborted *AbortedError
		if errors.As(err, &aborted) {
			return true, nil // contradicted, and finished by rollback
		}
		return true, err
	default: // final: only the open-set entry was left
		return false, c.records.forget(ctx, id)
	}
}

// inDoubtQueries are the participants' lists of what they hold prepared.
var inDoubtQueries = []string{"counter-indoubt", "notify-indoubt"}

// recoverInDoubt finishes the transactions a participant has held prepared
// for longer than StuckAfter + PhaseTwoTimeout whose record is gone
// (Redis restarted empty, or lost it with the coordinator): by then no
// publisher is still at work on them. Without the record the decision is
// read from the participants: if any committed, the transaction commits
// everywhere, else it rolls back. Commit and rollback both run counter
// first, so the counter tells: its rollback either succeeds (nothing
// committed, and a late commit is now refused) or answers 409 committed.
// A transaction with a record is left to the record's recovery.
func (c *Coordinator) recoverInDoubt(ctx context.Context) (int, error) {
	q := twopc.InDoubtQuery{OlderThanMs: (c.cfg.StuckAfter + c.cfg.PhaseTwoTimeout).Milliseconds()}
	var ids []string
	var errs []error
	for _, name := range inDoubtQueries {
		var answer twopc.InDoubt
		if err := c.cfg.Calls.Call(ctx, name, q, &answer); err != nil {
			errs = append(errs, fmt.Errorf("ask %s: %w", name, err))
			continue
		}
		ids = append(ids, answer.TxIDs...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	done := 0
	for _, id := range ids {
		state, err := c.records.state(ctx, id)
		if err != nil {
			// Without an answer from Redis the record may still hold a
			// decision; acting on the participants alone could contradict it.
			errs = append(errs, fmt.Errorf("in-doubt %s: read its record: %w", id, err))
			continue
		}
		if state != "" {
			continue
		}
		if err := c.resolveInDoubt(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		done++
		c.countRecovered(ctx)
	}
	return done, errors.Join(errs...)
}

// resolveInDoubt finishes a transaction without its record.
func (c *Coordinator) resolveInDoubt(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.PhaseTwoTimeout)
	defer cancel()
	log := c.log.With("tx", id)
	err := c.retry(ctx, "counter-rollback", twopc.Decision{TxID: id}, nil)
	var ce *invoke.CallError
	switch {
	case errors.As(err, &ce) && ce.Status == http.StatusConflict && ce.Code == barrier.Committed:
		log.Info("recovery without a record: the counter committed; committing persist too")
		if err := c.retry(ctx, "notify-commit", twopc.Decision{TxID: id}, nil); err != nil {
			return fmt.Errorf("in-doubt %s: commit persist: %w", id, err)
		}
		// Without its record (the title, the body) the notification is
		// not pushed live; its recipients list it and replay it on join.
		c.forgetRecipients(ctx, id)
		c.records.count(ctx, "committed")
		c.cfg.Metrics.Transactions.WithLabelValues("committed").Inc()
		return nil
	case err != nil:
		return fmt.Errorf("in-doubt %s: roll back the counter: %w", id, err)
	}
	log.Info("recovery without a record: nothing committed; rolling back persist")
	if err := c.retry(ctx, "notify-rollback", twopc.Decision{TxID: id}, nil); err != nil {
		return fmt.Errorf("in-doubt %s: roll back persist: %w", id, err)
	}
	c.forgetRecipients(ctx, id)
	c.records.count(ctx, "aborted")
	c.cfg.Metrics.Transactions.WithLabelValues("aborted").Inc()
	return nil
}
