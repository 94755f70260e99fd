// Package coordinator runs tidings's two-phase commit from gateway-ws.
// Publishing a notification is one transaction over two participants:
// persist (notify-*) stores the notification, counter (counter-*) adds one
// unread to each recipient. The record in Redis is written before each
// step, so any replica's recovery can finish what a dead one started:
// committing is driven to commit, anything earlier is rolled back.
package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"tidings/gateway-ws/invoke"
	"tidings/lib/config"
	"tidings/lib/directory"
	"tidings/lib/fn"
	"tidings/lib/metrics"
	"tidings/lib/store"
	"tidings/lib/twopc"
)

// Caller calls a function by name; *invoke.Invoker is one.
type Caller interface {
	Call(ctx context.Context, name string, body, out any) error
}

// Lookup answers who owns a topic and who subscribes to it;
// *directory.Directory is one, reading through the cache.
type Lookup interface {
	TopicOwner(ctx context.Context, topicID int64) (int64, error)
	Subscribers(ctx context.Context, topicID int64) ([]int64, error)
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
)

// Config configures a Coordinator.
type Config struct {
	Redis  *redis.Client
	Prefix string        // key prefix in Redis
	DB     store.Querier // topics, subscribers and counters, read-only
	Lookup Lookup        // topic owners and subscribers; nil: straight from DB
	Calls  Caller        // the participants
	Log    *slog.Logger
	// Deliver sends an event to a channel topic on every gateway replica.
	Deliver func(ctx context.Context, topic, event string, payload any) error

	Settings

	// Jobs queues the mails of publishes with email on; nil turns mail off.
	Jobs Enqueuer
	// Metrics; nil: not exported.
	Metrics *metrics.TwoPC

	// Crash, when set, is asked at each Fault point; true means the
	// coordinator dies there (a test returns true; chaos exits the process).
	Crash func(Fault) bool
}

// Settings are the coordinator's timings.
type Settings struct {
	PhaseTwoTimeout  time.Duration // PHASE_TWO_TIMEOUT: how long commit or rollback is retried before recovery takes over
	RetryBase        time.Duration // RETRY_BASE: first backoff between retries
	RetryMax         time.Duration // RETRY_MAX: largest backoff
	StuckAfter       time.Duration // RECOVERY_STUCK_AFTER: an unfinished record older than this is recovered
	RecoveryInterval time.Duration // RECOVERY_INTERVAL: how often recovery runs
	RecordTTL        time.Duration // TX_RECORD_TTL: how long a finished record is kept
}

// SettingsFromEnv reads the Settings; unset ones get New's defaults.
func SettingsFromEnv() (Settings, error) {
	var s Settings
	for _, d := range []struct {
		key string
		dst *time.Duration
	}{
		{"PHASE_TWO_TIMEOUT", &s.PhaseTwoTimeout}, {"RETRY_BASE", &s.RetryBase}, {"RETRY_MAX", &s.RetryMax},
		{"RECOVERY_STUCK_AFTER", &s.StuckAfter}, {"RECOVERY_INTERVAL", &s.RecoveryInterval}, {"TX_RECORD_TTL", &s.RecordTTL},
	} {
		var err error
		if *d.dst, err = config.Duration(d.key, 0); err != nil {
			return s, err
		}
	}
	return s, nil
}

// Stats count transactions across every replica and restart; they are
// kept in Redis beside the records.
type Stats struct {
	Published int64 `json:"published"` // transactions started
	Committed int64 `json:"committed"` // finished by commit
	Aborted   int64 `json:"aborted"`   // finished by rollback
	Recovered int64 `json:"recovered"` // finished by recovery (also counted above)
}

// Coordinator publishes notifications as two-phase commits.
type Coordinator struct {
	cfg     Config
	records *records
	log     *slog.Logger
}

// New returns a Coordinator; zero durations get defaults.
func New(cfg Config) *Coordinator {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.PhaseTwoTimeout, 10*time.Second)
	def(&cfg.RetryBase, 50*time.Millisecond)
	def(&cfg.RetryMax, 2*time.Second)
	def(&cfg.StuckAfter, 30*time.Second)
	def(&cfg.RecoveryInterval, 10*time.Second)
	def(&cfg.RecordTTL, 24*time.Hour)
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewTwoPC(prometheus.NewRegistry())
	}
	if cfg.Lookup == nil {
		cfg.Lookup = directory.New(cfg.DB, nil, log)
	}
	return &Coordinator{cfg: cfg, log: log, records: &records{rdb: cfg.Redis, prefix: cfg.Prefix, ttl: cfg.RecordTTL}}
}

// Stats returns the counts.
func (c *Coordinator) Stats(ctx context.Context) (Stats, error) {
	return c.records.stats(ctx)
}

// Message is what a publisher sends.
type Message struct {
	Title string `json:"title"`
	Body  string `json:"body"`
	Email bool   `json:"email"`
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

// Refusal is a publish refused before any transaction began.
type Refusal struct {
	Reason  string // "forbidden", "not_found", "invalid"
	Message string
}

func (r *Refusal) Error() string { return r.Reason + ": " + r.Message }

// AbortedError is a publish whose transaction was rolled back.
type AbortedError struct {
	TxID  string
	Cause error
}

func (e *AbortedError) Error() string {
	return fmt.Sprintf("publish aborted (transaction %s rolled back): %v", e.TxID, e.Cause)
}
func (e *AbortedError) Unwrap() error { return e.Cause }

// ErrCrashed is returned when a Crash hook stopped the coordinator.
var ErrCrashed = errors.New("coordinator crashed at a fault point")

// Publish stores and counts a notification from sender on topicID for
// every subscriber, atomically, then delivers it. The answer comes after
// commit.
func (c *Coordinator) Publish(ctx context.Context, sender, topicID int64, msg Message) (Result, error) {
	payload, err := c.payload(ctx, sender, topicID, msg)
	if err != nil {
		return Result{}, err
	}
	rec := &Record{
		ID: newTxID(), State: Preparing, Participants: []string{twopc.Persist, twopc.Counter},
		Payload: payload, CreatedAt: time.Now(),
	}
	log := c.log.With("tx", rec.ID, "topic", topicID)
	if err := c.records.create(ctx, rec); err != nil {
		return Result{}, fmt.Errorf("cannot start the transaction: %w", err)
	}
	c.records.count(ctx, "published")

	if reached, err := c.prepare(ctx, rec); err != nil {
		log.Info("prepare failed; rolling back", "err", err)
		return Result{}, c.abort(ctx, rec, reached, err)
	}
	if c.crash(AfterPrepare) {
		return Result{}, ErrCrashed
	}
	if err := c.records.transition(ctx, rec.ID, Preparing, Committing); err != nil {
		// Recovery on another replica, or Redis failing: without a recorded
		// decision the transaction cannot commit.
		return Result{}, c.abort(ctx, rec, allParticipants, fmt.Errorf("recording the decision: %w", err))
	}
	if c.crash(AfterDecision) {
		return Result{}, ErrCrashed
	}
	res := Result{NotificationID: rec.NotificationID, TxID: rec.ID, Recipients: len(payload.Recipients)}
	if err := c.finishCommit(ctx, rec); err != nil {
		log.Warn("commit not acknowledged yet; recovery will finish it", "err", err)
		res.Pending = true
	}
	return res, nil
}

// payload checks the message and the publisher's right to publish, and
// fixes the recipients once, so both participants agree on them.
func (c *Coordinator) payload(ctx context.Context, sender, topicID int64, msg Message) (Payload, error) {
	title, err := twopc.CheckMessage(msg.Title, msg.Body)
	if err != nil {
		return Payload{}, &Refusal{"invalid", fn.AsError(err).Message}
	}
	msg.Title = title
	owner, err := c.cfg.Lookup.TopicOwner(ctx, topicID)
	if errors.Is(err, store.ErrNotFound) {
		return Payload{}, &Refusal{"not_found", fmt.Sprintf("topic %d does not exist", topicID)}
	}
	if err != nil {
		return Payload{}, fmt.Errorf("look up topic %d: %w", topicID, err)
	}
	if owner != sender {
		return Payload{}, &Refusal{"forbidden", "only the topic's owner may publish on it"}
	}
	recipients, err := c.cfg.Lookup.Subscribers(ctx, topicID)
	if err != nil {
		return Payload{}, fmt.Errorf("subscribers of topic %d: %w", topicID, err)
	}
	return Payload{TopicID: topicID, SenderID: sender, Title: msg.Title, Body: msg.Body, Email: msg.Email, Recipients: recipients}, nil
}

// allParticipants are the rollbacks of every participant, in the order
// prepare calls them.
var allParticipants = []string{"notify-rollback", "counter-rollback"}

// prepare asks both participants in parallel; any no, error or timeout
// fails it. It returns the rollbacks owed: those of participants the
// prepare may have reached.
func (c *Coordinator) prepare(ctx context.Context, rec *Record) ([]string, error) {
	defer c.timePhase("prepare")()
	p := rec.Payload
	var wg sync.WaitGroup
	errs := make([]error, 2)
	var vote twopc.Vote
	wg.Add(2)
	go func() {
		defer wg.Done()
		errs[0] = c.cfg.Calls.Call(ctx, "notify-prepare", twopc.NotifyPrepare{
			TxID: rec.ID, TopicID: p.TopicID, SenderID: p.SenderID, Title: p.Title, Body: p.Body,
			Email: p.Email, Recipients: p.Recipients,
		}, &vote)
	}()
	go func() {
		defer wg.Done()
		errs[1] = c.cfg.Calls.Call(ctx, "counter-prepare", twopc.CounterPrepare{TxID: rec.ID, Recipients: p.Recipients}, nil)
	}()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		var owed []string
		for i, e := range errs {
			if e == nil || !invoke.NotSent(e) {
				owed = append(owed, allParticipants[i])
			}
		}
		return owed, err
	}
	rec.NotificationID = vote.NotificationID
	if err := c.records.setNotification(ctx, rec.ID, vote.NotificationID); err != nil {
		return allParticipants, fmt.Errorf("record notification id: %w", err)
	}
	return nil, nil
}

// abort records the rollback decision (unless another replica already
// decided), rolls back the participants owed a rollback, and returns the
// publisher's error.
func (c *Coordinator) abort(ctx context.Context, rec *Record, owed []string, cause error) error {
	err := c.records.transition(ctx, rec.ID, Preparing, Aborting)
	var moved *errMoved
	if errors.As(err, &moved) && moved.state == Committing {
		// Recovery cannot have chosen commit for a record it found
		// preparing; a committing record is ours, and commits.
		return c.finishCommit(ctx, rec)
	}
	if err := c.finishRollback(ctx, rec, owed); err != nil {
		c.log.Warn("rollback not acknowledged yet; recovery will finish it", "tx", rec.ID, "err", err)
	}
	return &AbortedError{TxID: rec.ID, Cause: cause}
}

// finishCommit commits the counter, then persist (so a notification is never
// visible, and ackable, before it is counted), records the outcome, and
// delivers the notification.
func (c *Coordinator) finishCommit(ctx context.Context, rec *Record) error {
	defer c.timePhase("commit")()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.PhaseTwoTimeout)
	defer cancel()
	var counted twopc.Outcome
	if err := c.retry(ctx, "counter-commit", twopc.Decision{TxID: rec.ID}, &counted); err != nil {
		return err
	}
	var persisted twopc.Outcome
	if err := c.retry(ctx, "notify-commit", twopc.Decision{TxID: rec.ID}, &persisted); err != nil {
		return err
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
	if errors.As(err, &moved) && moved.state == Committed {
		return nil // a recovering replica finished it at the same time
	}
	if err != nil {
		return err
	}
	c.records.count(ctx, "committed")
	c.cfg.Metrics.Transactions.WithLabelValues("committed").Inc()
	c.deliver(ctx, rec, counted.Unread)
	return nil
}

// finishRollback calls the given rollbacks and records the outcome.
func (c *Coordinator) finishRollback(ctx context.Context, rec *Record, rollbacks []string) error {
	defer c.timePhase("rollback")()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.PhaseTwoTimeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(rollbacks))
	for i, name := range rollbacks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.retry(ctx, name, twopc.Decision{TxID: rec.ID}, nil)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := c.records.transition(ctx, rec.ID, Aborting, Aborted); err != nil {
		return err
	}
	c.records.count(ctx, "aborted")
	c.cfg.Metrics.Transactions.WithLabelValues("aborted").Inc()
	return nil
}

// retry calls a commit or rollback until the participant acknowledges it,
// backing off between tries. A refusal (4xx) is final: retrying cannot
// change a participant's verdict.
func (c *Coordinator) retry(ctx context.Context, name string, body, out any) error {
	wait := c.cfg.RetryBase
	for {
		err := c.cfg.Calls.Call(ctx, name, body, out)
		var ce *invoke.CallError
		if err == nil || (errors.As(err, &ce) && ce.Status >= 400 && ce.Status < 500 && ce.Status != 429) {
			return err
		}
		c.log.Debug("phase two call failed; retrying", "function", name, "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not acknowledged: %w", name, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, c.cfg.RetryMax)
	}
}

// deliver sends the notification to every recipient's user channel with
// their new unread count. Live delivery is best effort: the notification
// is already committed and listed.
func (c *Coordinator) deliver(ctx context.Context, rec *Record, unread map[int64]int64) {
	if c.cfg.Deliver == nil {
		return
	}
	p := rec.Payload
	for _, user := range p.Recipients {
		n, ok := unread[user]
		if !ok {
			var err error
			if n, err = store.Unread(ctx, c.cfg.DB, user); err != nil {
				continue
			}
		}
		event := map[string]any{
			"id": rec.NotificationID, "topic_id": p.TopicID, "sender_id": p.SenderID,
			"title": p.Title, "body": p.Body, "created_at": rec.CreatedAt.UTC().Format(time.RFC3339Nano), "unread": n,
		}
		if err := c.cfg.Deliver(ctx, fmt.Sprintf("user:%d", user), "notification", event); err != nil {
			c.log.Warn("live delivery failed", "tx", rec.ID, "user", user, "err", err)
		}
	}
}

// enqueueMails queues one send-mail job per recipient who subscribes with
// email on, for a publish that asked for mail. The publisher owns the
// jobs, so their progress shows on the publisher's user channel.
func (c *Coordinator) enqueueMails(ctx context.Context, rec *Record) error {
	p := rec.Payload
	if !p.Email || c.cfg.Jobs == nil {
		return nil
	}
	topic, recipients, err := store.MailRecipients(ctx, c.cfg.DB, p.TopicID, p.Recipients)
	if err != nil {
		return fmt.Errorf("mail recipients of %s: %w", rec.ID, err)
	}
	for _, r := range recipients {
		mail, _ := json.Marshal(map[string]string{
			"idempotency_key": fmt.Sprintf("%s-%d", rec.ID, r.UserID),
			"to":              r.Email,
			"subject":         truncate(fmt.Sprintf("[%s] %s", topic, p.Title), twopc.MaxTitle),
			"text":            p.Body + "\n\n-- \nYou get this because you subscribed to " + topic + " with email on.",
		})
		if _, err := c.cfg.Jobs.Enqueue(ctx, p.SenderID, "send-mail", mail); err != nil {
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

// truncate cuts s to at most n runes.
func truncate(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
}

func (c *Coordinator) crash(at Fault) bool { return c.cfg.Crash != nil && c.cfg.Crash(at) }

func newTxID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
