// Package coordinator runs tidings's two-phase commit from gateway-ws.
// Publishing a notification is one transaction over two participants:
// persist (notify-*) stores the notification, counter (counter-*) adds one
// unread to each recipient. The record in Redis is written before each
// step, so any replica's recovery can finish what a dead one started:
// committing is driven to commit, anything earlier is rolled back.
//
// It also relays acks to the counter (acks.go): an ack is decided by the
// persist participant alone and carried to the counter afterwards.
package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"tidings/gateway-ws/invoke"
	"tidings/lib/config"
	"tidings/lib/directory"
	"tidings/lib/fn"
	"tidings/lib/logging"
	"tidings/lib/mail"
	"tidings/lib/metrics"
	"tidings/lib/notification"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Caller calls a function by name; *invoke.Invoker is one.
type Caller interface {
	Call(ctx context.Context, name string, body, out any) error
}

// Lookup answers who owns a topic; *directory.Directory is one, reading
// through the cache. Who subscribes is read from the directory itself when
// the recipients are fixed (store.FixRecipients), never from a cache.
type Lookup interface {
	TopicOwner(ctx context.Context, topicID int64) (int64, error)
}

// Enqueuer queues a job; *jobs.Queue is one.
type Enqueuer interface {
	Enqueue(ctx context.Context, owner int64, function string, payload json.RawMessage) (string, error)
}

// Fault names a point in a transaction where a test or `make chaos` may
// crash the coordinator.
type Fault string

// The crash points.
const (
	AfterPrepare  Fault = "after-prepare"  // both voted, no decision recorded
	AfterDecision Fault = "after-decision" // committing recorded, nothing committed
	// AfterCounterCommit: the counter committed, persist not yet.
	AfterCounterCommit Fault = "after-counter-commit"
)

// Config configures a Coordinator.
type Config struct {
	Redis  redis.UniversalClient
	Prefix string // key prefix in Redis
	// DB is the directory (topics, subscribers, emails): read, and
	// written only for the recipient sets of the transactions in flight.
	DB     store.Querier
	Lookup Lookup // topic owners; nil: straight from DB
	Calls  Caller // the participants
	Log    *slog.Logger
	// Deliver sends a batch to its users' channels on every gateway
	// replica, as one Redis message. A batch holds at most deliveryBatch
	// users (ackBatch from the ack relay); Deliver is called from several
	// goroutines at once.
	Deliver func(ctx context.Context, batch UserBatch) error
	// Watch hears a Redis channel for the process's life, calling hear
	// with each message (the gateway's broker, on its one pub/sub
	// connection). nil: the ack relay subscribes on a connection of its own.
	Watch func(ctx context.Context, channel string, hear func(payload string)) error

	Settings

	// Jobs queues the mails of publishes with email on; nil turns mail off.
	Jobs Enqueuer
	// Metrics; nil: not exported.
	Metrics *metrics.TwoPC

	// Crash, when set, is asked at each Fault point; true means the
	// coordinator dies there (a test returns true; chaos exits the process).
	Crash func(Fault) bool
}

// Settings are the coordinator's timings; DefaultSettings holds the
// defaults, which New also gives a zero field.
type Settings struct {
	PhaseTwoTimeout  time.Duration `env:"PHASE_TWO_TIMEOUT"`    // how long commit or rollback is retried before recovery takes over; bounds a commit's live delivery too
	RetryBase        time.Duration `env:"RETRY_BASE"`           // first backoff between retries
	RetryMax         time.Duration `env:"RETRY_MAX"`            // largest backoff
	StuckAfter       time.Duration `env:"RECOVERY_STUCK_AFTER"` // an unfinished record older than this is recovered
	RecoveryInterval time.Duration `env:"RECOVERY_INTERVAL"`    // how often recovery runs
	RecordTTL        time.Duration `env:"TX_RECORD_TTL"`        // how long a finished record is kept
	RecordTimeout    time.Duration `env:"TX_RECORD_TIMEOUT"`    // bound of each record read or write in Redis
	AckRelayInterval time.Duration `env:"ACK_RELAY_INTERVAL"`   // how often the ack relay looks for acks nobody woke it for (RunAckRelay)
}

// DefaultSettings is Settings' defaults.
func DefaultSettings() Settings {
	return Settings{
		PhaseTwoTimeout:  10 * time.Second,
		RetryBase:        50 * time.Millisecond,
		RetryMax:         2 * time.Second,
		StuckAfter:       30 * time.Second,
		RecoveryInterval: 10 * time.Second,
		RecordTTL:        24 * time.Hour,
		RecordTimeout:    time.Second,
		AckRelayInterval: time.Second,
	}
}

// UserBatch is one event for many users' channels (user:<id>), the same
// for each but for the user's unread count: a batch of a notification's
// live delivery, or the counts an ack relay changed. It travels whole, as
// one Redis message, to every gateway replica, and each hands its own
// members their copy: Redis carries a message per batch, not one per
// recipient.
type UserBatch struct {
	Event string `json:"event"`
	// Notification is the event delivered, its Unread left zero; nil for
	// a counter update.
	Notification *notification.Event `json:"notification,omitempty"`
	// Unread is each recipient's unread count, by user id.
	Unread map[int64]int64 `json:"unread"`
}

// Payload is the event's payload for a recipient with unread notifications
// unread.
func (b UserBatch) Payload(unread int64) any {
	if b.Notification == nil {
		return CounterEvent{Unread: unread}
	}
	ev := *b.Notification
	ev.Unread = unread
	return ev
}

// Coordinator publishes notifications as two-phase commits.
type Coordinator struct {
	cfg     Config
	records *records
	log     *slog.Logger
	// delivering counts the live deliveries under way, which run after
	// their publisher was answered; Close waits for them.
	delivering sync.WaitGroup
}

// New returns a Coordinator; zero durations get defaults.
func New(cfg Config) *Coordinator {
	def := DefaultSettings()
	config.OrDefault(&cfg.PhaseTwoTimeout, def.PhaseTwoTimeout)
	config.OrDefault(&cfg.RetryBase, def.RetryBase)
	config.OrDefault(&cfg.RetryMax, def.RetryMax)
	config.OrDefault(&cfg.StuckAfter, def.StuckAfter)
	config.OrDefault(&cfg.RecoveryInterval, def.RecoveryInterval)
	config.OrDefault(&cfg.RecordTTL, def.RecordTTL)
	config.OrDefault(&cfg.RecordTimeout, def.RecordTimeout)
	config.OrDefault(&cfg.AckRelayInterval, def.AckRelayInterval)
	log := logging.Or(cfg.Log)
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewTwoPC(prometheus.NewRegistry())
	}
	if cfg.Lookup == nil {
		cfg.Lookup = directory.New(cfg.DB, nil, log)
	}
	return &Coordinator{cfg: cfg, log: log, records: newRecords(cfg.Redis, cfg.Prefix, cfg.RecordTTL, cfg.RecordTimeout)}
}

// Close waits for the live deliveries under way (each bounded by
// PhaseTwoTimeout), then releases the coordinator's own Redis connections.
func (c *Coordinator) Close() error {
	c.delivering.Wait()
	return c.records.close()
}

// Result is a committed publish.
type Result struct {
	NotificationID int64  `json:"notification_id"`
	TxID           string `json:"tx_id"`
	Recipients     int    `json:"recipients"`
	// Pending is true when the commit was decided but not yet acknowledged
	// within PhaseTwoTimeout; recovery completes it.
	Pending bool `json:"pending,omitempty"`
}

// Reason says why a publish was refused.
type Reason string

// The reasons of a Refusal.
const (
	Invalid   Reason = "invalid"   // the message fails notification.Message.Check
	NotFound  Reason = "not_found" // the topic does not exist
	Forbidden Reason = "forbidden" // the sender does not own the topic
	// UnknownUsers: a direct notification names ids that are no user's;
	// the Refusal's message names them.
	UnknownUsers Reason = "unknown_users"
)

// Refusal is a publish refused before any transaction began, on its
// merits: nothing was written anywhere.
type Refusal struct {
	Reason  Reason
	Message string // what was wrong, for the log and the publisher
}

func (r *Refusal) Error() string { return string(r.Reason) + ": " + r.Message }

// AbortedError is a publish whose transaction was rolled back.
type AbortedError struct {
	TxID  string
	Cause error
}

func (e *AbortedError) Error() string {
	return fmt.Sprintf("publish aborted (transaction %s rolled back): %v", e.TxID, e.Cause)
}
func (e *AbortedError) Unwrap() error { return e.Cause }

// PendingError is a publish whose outcome could not be told: a record
// write's answer was lost and Redis could not be asked again in time. The
// transaction is not lost: recovery finishes it, by commit if the decision
// landed, else by rollback.
type PendingError struct {
	TxID  string
	Cause error
}

func (e *PendingError) Error() string {
	return fmt.Sprintf("publish pending (transaction %s is finished by recovery): %v", e.TxID, e.Cause)
}
func (e *PendingError) Unwrap() error { return e.Cause }

// ErrCrashed is returned when a Crash hook stopped the coordinator.
var ErrCrashed = errors.New("coordinator crashed at a fault point")

// Publish stores and counts a notification from sender on topicID for
// every subscriber, atomically, then delivers it. The answer comes after
// commit; live delivery goes on after it.
func (c *Coordinator) Publish(ctx context.Context, sender, topicID int64, msg notification.Message) (Result, error) {
	payload, err := c.payload(ctx, sender, topicID, msg)
	if err != nil {
		return Result{}, err
	}
	rec := newRecord(payload)
	if err := c.fixRecipients(ctx, rec); err != nil {
		return Result{}, err
	}
	return c.run(ctx, rec)
}

// newRecord is the record of a new transaction publishing payload.
func newRecord(payload notification.Draft) *Record {
	return &Record{ID: rand.Text(), State: Preparing, Payload: payload, CreatedAt: time.Now()}
}

// run is the two-phase commit of rec, whose recipients are fixed: record,
// prepare, decide, commit (or abort), for every kind of publish.
func (c *Coordinator) run(ctx context.Context, rec *Record) (Result, error) {
	log := c.log.With("tx", rec.ID, "topic", rec.Payload.TopicID)
	if err := c.records.create(ctx, rec); err != nil {
		// Nothing was asked of a participant; should the write land after
		// all, recovery finds the record preparing and rolls it back.
		c.forgetRecipients(context.WithoutCancel(ctx), rec.ID)
		return Result{}, fmt.Errorf("cannot start the transaction: %w", err)
	}
	c.records.count(ctx, "published")

	if reached, err := c.prepare(ctx, rec); err != nil {
		log.Info("prepare failed; rolling back", "err", err)
		return c.abort(ctx, rec, reached, err)
	}
	if c.crash(AfterPrepare) {
		return Result{}, ErrCrashed
	}
	err := c.records.decide(ctx, rec.ID, rec.NotificationID)
	var moved *errMoved
	if err != nil && !(errors.As(err, &moved) && moved.state == Committing) {
		// Not decided, or not known to be: abort settles which. Recovery
		// never moves a record to committing, so a committing record found
		// there is this decision, landed after all, and it is honoured.
		log.Info("decision not recorded; rolling back unless it landed", "err", err)
		return c.abort(ctx, rec, allRollbacks, fmt.Errorf("recording the decision: %w", err))
	}
	if c.crash(AfterDecision) {
		return Result{}, ErrCrashed
	}
	return c.commit(ctx, rec)
}

// commit finishes a decided commit for its publisher.
func (c *Coordinator) commit(ctx context.Context, rec *Record) (Result, error) {
	res := Result{NotificationID: rec.NotificationID, TxID: rec.ID, Recipients: rec.Payload.Recipients}
	err := c.finishCommit(ctx, rec)
	var aborted *AbortedError
	switch {
	case errors.As(err, &aborted), errors.Is(err, ErrCrashed):
		return Result{}, err
	case err != nil:
		c.log.Warn("commit not acknowledged yet; recovery will finish it", "tx", rec.ID, "err", err)
		res.Pending = true
	}
	res.NotificationID = rec.NotificationID
	return res, nil
}

// payload checks the message and the publisher's right to publish. It is
// the publish path's one check of the topic's owner: the gateway's socket
// and HTTP entry points leave it to here.
func (c *Coordinator) payload(ctx context.Context, sender, topicID int64, msg notification.Message) (notification.Draft, error) {
	if err := msg.Check(); err != nil {
		return notification.Draft{}, &Refusal{Invalid, fn.AsError(err).Message}
	}
	owner, err := c.cfg.Lookup.TopicOwner(ctx, topicID)
	if errors.Is(err, store.ErrNotFound) {
		return notification.Draft{}, &Refusal{NotFound, fmt.Sprintf("topic %d does not exist", topicID)}
	}
	if err != nil {
		return notification.Draft{}, fmt.Errorf("look up topic %d: %w", topicID, err)
	}
	if owner != sender {
		return notification.Draft{}, &Refusal{Forbidden, "only the topic's owner may publish on it"}
	}
	return notification.Draft{TopicID: topicID, SenderID: sender, Message: msg}, nil
}

// fixRecipients fixes the recipients of rec once, as the topic's
// subscribers now, in the directory (store.FixRecipients): both
// participants read that set, so they agree on the recipients whatever
// subscribes or unsubscribes meanwhile, and no call body or record
// carries the ids. The record keeps only their count.
func (c *Coordinator) fixRecipients(ctx context.Context, rec *Record) error {
	n, err := store.FixRecipients(ctx, c.cfg.DB, rec.ID, rec.Payload.TopicID)
	if err != nil {
		// A set whose write landed after all is swept by recovery.
		return fmt.Errorf("cannot fix the recipients of topic %d: %w", rec.Payload.TopicID, err)
	}
	if n > twopc.MaxRecipients {
		c.forgetRecipients(context.WithoutCancel(ctx), rec.ID)
		return fmt.Errorf("topic %d has %d subscribers, more than the %d one publish reaches", rec.Payload.TopicID, n, twopc.MaxRecipients)
	}
	rec.Payload.Recipients = n
	return nil
}

// forgetRecipients deletes the recipient set of txID, once its transaction
// is finished and delivered. A set that stays (this fails, or the process
// dies first) is swept by recovery (sweepRecipientSets).
func (c *Coordinator) forgetRecipients(ctx context.Context, txID string) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RecordTimeout)
	defer cancel()
	if err := store.ForgetRecipients(ctx, c.cfg.DB, txID); err != nil {
		c.log.Warn("cannot delete a recipient set; recovery sweeps it", "tx", txID, "err", err)
	}
}

// allRollbacks are the rollbacks of every participant, in the order they
// run: one at a time, counter first. Commit runs counter first too, so
// while a rollback is under way persist can only have committed if counter
// did; recovery without a record relies on it (see recoverInDoubt).
var allRollbacks = []string{"counter-rollback", "notify-rollback"}

// prepare asks both participants in parallel; any no, error or timeout
// fails it. It returns the rollbacks owed: those of participants the
// prepare may have reached.
func (c *Coordinator) prepare(ctx context.Context, rec *Record) ([]string, error) {
	defer c.timePhase("prepare")()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	var vote twopc.Vote
	wg.Add(2)
	go func() {
		defer wg.Done()
		errs[0] = c.cfg.Calls.Call(ctx, "notify-prepare", twopc.NotifyPrepare{TxID: rec.ID, Draft: rec.Payload}, &vote)
	}()
	go func() {
		defer wg.Done()
		errs[1] = c.cfg.Calls.Call(ctx, "counter-prepare", twopc.CounterPrepare{TxID: rec.ID, Recipients: rec.Payload.Recipients}, nil)
	}()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		// errs[0] is persist's (notify-rollback), errs[1] counter's.
		var owed []string
		for i, name := range []string{"counter-rollback", "notify-rollback"} {
			if e := errs[1-i]; e == nil || !invoke.NotSent(e) {
				owed = append(owed, name)
			}
		}
		return owed, err
	}
	rec.NotificationID = vote.NotificationID
	return nil, nil
}

// abort records the rollback decision and rolls back the participants
// owed a rollback, answering the publisher. Whether the record can still
// be aborted is settled first: a commit decision that landed (a write whose
// answer was lost) is honoured; if Redis cannot tell, nothing is rolled
// back and the publish is pending, left to recovery.
func (c *Coordinator) abort(ctx context.Context, rec *Record, owed []string, cause error) (Result, error) {
	ctx = context.WithoutCancel(ctx)
	state, err := c.records.settle(ctx, rec.ID, Preparing, Aborting, settleTries, c.cfg.RetryBase)
	switch {
	case err != nil:
		c.log.Warn("cannot tell whether the transaction was decided; recovery will finish it", "tx", rec.ID, "err", err, "cause", cause)
		return Result{}, &PendingError{TxID: rec.ID, Cause: errors.Join(cause, err)}
	case state == Committing:
		c.log.Info("the commit decision landed after all; committing", "tx", rec.ID)
		return c.commit(ctx, rec)
	case state == Committed:
		return Result{NotificationID: rec.NotificationID, TxID: rec.ID, Recipients: rec.Payload.Recipients}, nil
	case state == Aborted:
		return Result{}, &AbortedError{TxID: rec.ID, Cause: cause}
	}
	// Aborting (by us or by recovery), or the record is gone: no commit
	// was decided, or none that survives, so nothing committed.
	if err := c.finishRollback(ctx, rec, owed); err != nil {
		c.log.Warn("rollback not acknowledged yet; recovery will finish it", "tx", rec.ID, "err", err)
	}
	return Result{}, &AbortedError{TxID: rec.ID, Cause: cause}
}

// settleTries bounds how often an unknown record write is retried before
// the publish is left pending: Redis is either back at once or the
// publisher is better answered 503 now.
const settleTries = 3

// finishCommit commits the counter, then persist (so a notification is never
// visible, and ackable, before it is counted), records the outcome, and
// starts the notification's live delivery (which runs on after it returns). A counter that refuses the commit (it rolled
// back, or never prepared) means nothing committed anywhere: the
// transaction is rolled back everywhere instead and *AbortedError returned,
// so a contradicted record is finished rather than retried forever.
func (c *Coordinator) finishCommit(ctx context.Context, rec *Record) error {
	defer c.timePhase("commit")()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.PhaseTwoTimeout)
	defer cancel()
	if err := c.retry(ctx, "counter-commit", twopc.Decision{TxID: rec.ID}, nil); err != nil {
		if invoke.Retryable(err) {
			return err // not acknowledged in time: recovery goes on
		}
		c.log.Error("the counter refused a decided commit; rolling back everywhere instead", "tx", rec.ID, "err", err)
		if err := c.rollbackAll(ctx, rec.ID, allRollbacks); err != nil {
			return err
		}
		if err := c.finish(ctx, rec.ID, Committing, Aborted, "aborted"); err != nil {
			return err
		}
		return &AbortedError{TxID: rec.ID, Cause: err}
	}
	if c.crash(AfterCounterCommit) {
		return ErrCrashed
	}
	var persisted twopc.Outcome
	if err := c.retry(ctx, "notify-commit", twopc.Decision{TxID: rec.ID}, &persisted); err != nil {
		if invoke.Retryable(err) {
			return err
		}
		// Cannot happen while commits run counter first and rollbacks
		// counter first; finishing keeps recovery from looping on it.
		c.log.Error("persist refused a commit the counter made: the transaction is half committed", "tx", rec.ID, "err", err)
	}
	if persisted.NotificationID != 0 {
		rec.NotificationID = persisted.NotificationID
	}
	// Before the record says committed, so a crash here is redone by
	// recovery; send-mail's idempotency key keeps it to one mail each.
	if err := c.enqueueMails(ctx, rec); err != nil {
		return err
	}
	err := c.records.transition(ctx, rec.ID, Committing, Committed)
	var moved *errMoved
	finished := errors.As(err, &moved) && moved.state != Committing // by a recovering replica at the same time, or the record is gone
	// Both participants committed: the notification is delivered live
	// whatever became of the record's write. Left to recovery, a write
	// that failed but landed late would be found final and never
	// delivered. Delivering twice (recovery redoes a commit whose write
	// failed, or finished it at the same time) is harmless: the gateway
	// sends each notification id once per socket.
	c.deliverLater(rec, err == nil)
	if finished {
		return nil
	}
	if err != nil {
		return err
	}
	c.records.count(ctx, "committed")
	c.cfg.Metrics.Transactions.WithLabelValues("committed").Inc()
	return nil
}

// finishRollback calls the given rollbacks and records the outcome.
func (c *Coordinator) finishRollback(ctx context.Context, rec *Record, rollbacks []string) error {
	defer c.timePhase("rollback")()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.PhaseTwoTimeout)
	defer cancel()
	if err := c.rollbackAll(ctx, rec.ID, rollbacks); err != nil {
		return err
	}
	if err := c.finish(ctx, rec.ID, Aborting, Aborted, "aborted"); err != nil {
		return err
	}
	// Every prepare the transaction may still receive is fenced by a
	// rollback now, before it reads the set.
	c.forgetRecipients(ctx, rec.ID)
	return nil
}

// rollbackAll calls the rollbacks one after the other, in the order given,
// each until acknowledged.
func (c *Coordinator) rollbackAll(ctx context.Context, txID string, rollbacks []string) error {
	for _, name := range rollbacks {
		if err := c.retry(ctx, name, twopc.Decision{TxID: txID}, nil); err != nil {
			return err
		}
	}
	return nil
}

// finish records a final state and counts it; a record already moved on,
// or gone, was finished (or lost) elsewhere.
func (c *Coordinator) finish(ctx context.Context, txID, from, to, outcome string) error {
	err := c.records.transition(ctx, txID, from, to)
	var moved *errMoved
	if errors.As(err, &moved) && moved.state != from {
		return nil
	}
	if err != nil {
		return err
	}
	c.records.count(ctx, outcome)
	c.cfg.Metrics.Transactions.WithLabelValues(outcome).Inc()
	return nil
}

// retry calls a commit or rollback until the participant acknowledges it,
// backing off between tries (RetryBase doubled per try, at most RetryMax),
// until ctx ends. A final answer (invoke.Retryable says no: a refusal on
// its merits) is returned at once: retrying cannot change a participant's
// verdict.
func (c *Coordinator) retry(ctx context.Context, name string, body, out any) error {
	var last error
	call := func() (struct{}, error) {
		last = c.cfg.Calls.Call(ctx, name, body, out)
		if last != nil && !invoke.Retryable(last) {
			return struct{}{}, backoff.Permanent(last)
		}
		return struct{}{}, last
	}
	_, err := backoff.Retry(ctx, call,
		backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: c.cfg.RetryBase, Multiplier: 2, MaxInterval: c.cfg.RetryMax}),
		backoff.WithMaxElapsedTime(0), // ctx bounds the retries
		backoff.WithNotify(func(err error, wait time.Duration) {
			c.log.Debug("phase two call failed; retrying", "function", name, "err", err, "wait", wait)
		}))
	if err != nil && invoke.Retryable(last) { // ctx ended first
		return fmt.Errorf("%s not acknowledged: %w", name, last)
	}
	return err
}

// deliveryBatch is how many recipients one batch of a live delivery
// handles: one read of the recipient set, one counter-read call and one
// Deliver (one Redis message), each bounded whatever the topic's size.
const deliveryBatch = twopc.MaxUnreadBatch

// deliverLater delivers a committed notification live, after its
// publisher's answer, then, if final (its record says committed), deletes
// its recipient set; otherwise recovery, which commits it again, needs the
// set to deliver again, and the sweep deletes it in the end. It is bounded
// by a PhaseTwoTimeout of its own; Close waits for it.
func (c *Coordinator) deliverLater(rec *Record, final bool) {
	c.delivering.Add(1)
	go func() {
		defer c.delivering.Done()
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.PhaseTwoTimeout)
		defer cancel()
		defer c.timePhase("deliver")()
		c.deliver(ctx, rec)
		if final {
			c.forgetRecipients(ctx, rec.ID)
		}
	}()
}

// deliveryWorkers is how many batches of a live delivery run at once:
// enough to overlap one batch's counter-read with another's pipeline.
const deliveryWorkers = 4

// deliver sends the notification to every recipient's user channel with
// their unread count, a batch of recipients at a time, a few batches at
// once. A batch that fails (its recipients, their counts or the publish
// could not be had) is tried again, backing off as phase two does, until
// ctx ends: a notification committed must reach its connected recipients.
// One that still fails is listed, and the gateway fills it in to the
// sockets whose broker connection missed it (see gateway-ws/gateway,
// replay.go).
func (c *Coordinator) deliver(ctx context.Context, rec *Record) {
	if c.cfg.Deliver == nil {
		return
	}
	var g errgroup.Group
	g.SetLimit(deliveryWorkers)
	for from := 0; from < rec.Payload.Recipients; from += deliveryBatch {
		g.Go(func() error {
			_, err := backoff.Retry(ctx, func() (struct{}, error) { return struct{}{}, c.deliverBatch(ctx, rec, from) },
				backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: c.cfg.RetryBase, Multiplier: 2, MaxInterval: c.cfg.RetryMax}),
				backoff.WithMaxElapsedTime(0), // ctx bounds the tries
				backoff.WithNotify(func(err error, wait time.Duration) {
					c.log.Debug("live delivery failed; retrying", "tx", rec.ID, "from", from, "err", err, "wait", wait)
				}))
			if err != nil {
				c.log.Warn("live delivery failed for good", "tx", rec.ID, "from", from, "err", err)
			}
			return nil
		})
	}
	_ = g.Wait()
}

// deliverBatch delivers to the recipients of rec from position from, at
// most deliveryBatch of them.
func (c *Coordinator) deliverBatch(ctx context.Context, rec *Record, from int) error {
	users, err := store.Recipients(ctx, c.cfg.DB, rec.ID, from, deliveryBatch)
	if err != nil {
		return fmt.Errorf("read the recipients: %w", err)
	}
	if len(users) == 0 {
		// A record from before recipient sets, or one delivered and
		// forgotten by another replica: listed and counted, not pushed.
		return nil
	}
	var read twopc.Unread
	if err := c.cfg.Calls.Call(ctx, "counter-read", twopc.UnreadQuery{Users: users}, &read); err != nil {
		if !invoke.Retryable(err) {
			return backoff.Permanent(fmt.Errorf("read the unread counts of %d recipients: %w", len(users), err))
		}
		return fmt.Errorf("read the unread counts of %d recipients: %w", len(users), err)
	}
	event := notification.NewEvent(rec.NotificationID, rec.Payload, rec.CreatedAt, 0)
	batch := UserBatch{Event: notification.EventName, Notification: &event, Unread: read.Unread}
	if err := c.cfg.Deliver(ctx, batch); err != nil {
		return fmt.Errorf("deliver to %d recipients: %w", len(read.Unread), err)
	}
	return nil
}

// UserTopic is the channel topic of a user's own events.
func UserTopic(user int64) string { return fmt.Sprintf("user:%d", user) }

// enqueueMails queues one send-mail job per recipient who subscribes with
// email on (every recipient of a direct notification), for a publish that
// asked for mail. The publisher owns the jobs, so their progress shows on
// the publisher's user channel (a direct notification's have no owner, 0).
func (c *Coordinator) enqueueMails(ctx context.Context, rec *Record) error {
	p := rec.Payload
	if !p.Email || c.cfg.Jobs == nil {
		return nil
	}
	topic, recipients, err := store.MailRecipients(ctx, c.cfg.DB, rec.ID)
	if errors.Is(err, store.ErrNotFound) {
		// A record from before recipient sets, or a topic deleted since.
		c.log.Warn("no recipient set to mail; no mails sent", "tx", rec.ID)
		return nil
	}
	if err != nil {
		return fmt.Errorf("mail recipients of %s: %w", rec.ID, err)
	}
	subject, text := p.Title, p.Body // a direct notification's, on no topic
	if topic != "" {
		subject = fmt.Sprintf("[%s] %s", topic, p.Title)
		text += "\n\n-- \nYou get this because you subscribed to " + topic + " with email on."
	}
	for _, r := range recipients {
		req, _ := json.Marshal(mail.Request{
			IdempotencyKey: fmt.Sprintf("%s-%d", rec.ID, r.UserID),
			To:             r.Email,
			Subject:        mail.Subject(subject),
			Text:           text,
		})
		if _, err := c.cfg.Jobs.Enqueue(ctx, p.SenderID, "send-mail", req); err != nil {
			return fmt.Errorf("queue the mail of %s to user %d: %w", rec.ID, r.UserID, err)
		}
	}
	return nil
}

// timePhase starts timing a phase; call what it returns at the phase's end.
func (c *Coordinator) timePhase(phase string) func() {
	start := time.Now()
	return func() { c.cfg.Metrics.PhaseSeconds.WithLabelValues(phase).Observe(time.Since(start).Seconds()) }
}

func (c *Coordinator) crash(at Fault) bool { return c.cfg.Crash != nil && c.cfg.Crash(at) }
