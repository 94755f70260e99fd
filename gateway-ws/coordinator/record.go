package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"

	"tidings/lib/config"
	"tidings/lib/notification"
)

// States of a transaction record. Committing is the decision point: once
// it is recorded the transaction commits, whoever finishes it.
const (
	Preparing  = "preparing"
	Committing = "committing"
	Committed  = "committed"
	Aborting   = "aborting"
	Aborted    = "aborted"
)

// Record is a transaction as kept in Redis.
type Record struct {
	ID             string
	State          string
	Payload        notification.Draft // what is being published
	NotificationID int64
	CreatedAt      time.Time
}

// records keeps transaction records: a hash per transaction, and a sorted
// set of the unfinished ones by start time, which recovery scans.
type records struct {
	// rdb answers within timeout and never retries on its own: a write
	// whose answer is lost is settled by the coordinator (see settle),
	// not resent blindly.
	rdb     redis.UniversalClient
	prefix  string
	ttl     time.Duration // how long a finished record is kept
	timeout time.Duration // bound of each call
}

// newRecords returns the records on a client of their own, copied from rdb
// but bounded by timeout on every call (go-redis ignores a context's
// deadline on the socket unless told to) and without retries.
func newRecords(rdb redis.UniversalClient, prefix string, ttl, timeout time.Duration) *records {
	own := config.RedisOf(rdb).ContextTimeouts().NoRetries().Client()
	return &records{rdb: own, prefix: prefix, ttl: ttl, timeout: timeout}
}

// bounded returns ctx limited to one record call's timeout.
func (r *records) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.timeout)
}

func (r *records) close() error { return r.rdb.Close() }

func (r *records) key(id string) string { return r.prefix + "tx:" + id }
func (r *records) open() string         { return r.prefix + "tx:open" }

func (r *records) create(ctx context.Context, rec *Record) error {
	payload, err := json.Marshal(rec.Payload)
	if err != nil {
		return err
	}
	now := rec.CreatedAt.UnixMilli()
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	_, err = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, r.key(rec.ID), "state", rec.State, "payload", payload,
			"created_at", now, "updated_at", now)
		p.ZAdd(ctx, r.open(), redis.Z{Score: float64(now), Member: rec.ID})
		return nil
	})
	if err != nil {
		return fmt.Errorf("record transaction %s: %w", rec.ID, err)
	}
	return nil
}

// transitionScript moves a record from one state to the next only if it is
// still in the first, so a recovering replica and the original publisher
// can never decide differently, and a write that arrives late (its answer
// lost to a timeout or a partition) cannot overturn a state settled since.
// A final state leaves the open set and starts the record's expiry.
// ARGV[7], when set, is the notification id, stored with the decision.
var transitionScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'state')
if cur ~= ARGV[1] then return cur or '' end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'updated_at', ARGV[3])
if ARGV[7] ~= '0' then redis.call('HSET', KEYS[1], 'notification_id', ARGV[7]) end
if ARGV[4] == '1' then
  redis.call('ZREM', KEYS[2], ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
return 'OK'`)

// errMoved is a transition lost to another replica that moved the record
// first; state "" means the record is gone (Redis lost it).
type errMoved struct{ state string }

func (e *errMoved) Error() string {
	if e.state == "" {
		return "transaction record is gone"
	}
	return "transaction record is already " + e.state
}

// transition moves record id from one state to another (see
// transitionScript): nil, *errMoved naming the state it is in instead, or
// another error when the outcome is unknown.
func (r *records) transition(ctx context.Context, id, from, to string) error {
	return r.transitionWith(ctx, id, from, to, 0)
}

// decide records the decision to commit, with the notification id the
// persist participant voted.
func (r *records) decide(ctx context.Context, id string, notificationID int64) error {
	return r.transitionWith(ctx, id, Preparing, Committing, notificationID)
}

func (r *records) transitionWith(ctx context.Context, id, from, to string, notificationID int64) error {
	final := "0"
	if to == Committed || to == Aborted {
		final = "1"
	}
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	res, err := transitionScript.Run(ctx, r.rdb, []string{r.key(id), r.open()},
		from, to, time.Now().UnixMilli(), final, id, r.ttl.Milliseconds(), notificationID).Text()
	if err != nil {
		return fmt.Errorf("record %s -> %s for %s: %w", from, to, id, err)
	}
	if res != "OK" {
		return &errMoved{state: res}
	}
	return nil
}

// settle moves record id from one state to another like transition, but
// when a try's outcome is unknown (timeout, lost connection) it tries
// again, up to tries times: the transition is a compare-and-set, so a
// retry either applies it or reads back the state that a lost write (ours
// or another replica's) left. It returns the state the record is in
// afterwards ("" when it is gone), or an error when it could not be told.
func (r *records) settle(ctx context.Context, id, from, to string, tries int, wait time.Duration) (string, error) {
	var last error
	try := func() (string, error) {
		last = r.transition(ctx, id, from, to)
		var moved *errMoved
		switch {
		case last == nil:
			return to, nil
		case errors.As(last, &moved):
			return moved.state, nil
		}
		return "", last
	}
	state, err := backoff.Retry(ctx, try, backoff.WithBackOff(backoff.NewConstantBackOff(wait)),
		backoff.WithMaxTries(uint(tries)), backoff.WithMaxElapsedTime(0))
	if err != nil && ctx.Err() != nil {
		return "", fmt.Errorf("settle %s: %w (last: %v)", id, err, last)
	}
	return state, err
}

// stuck returns the ids of unfinished records started before cutoff.
func (r *records) stuck(ctx context.Context, cutoff time.Time) ([]string, error) {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	return r.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: r.open(), ByScore: true, Start: "-inf", Stop: strconv.FormatInt(cutoff.UnixMilli(), 10), Count: 1000,
	}).Result()
}

// load reads a record's hash field by field, so fields it does not read are
// ignored: records written before the participants field was dropped (every
// transaction has the same two) still load.
func (r *records) load(ctx context.Context, id string) (*Record, error) {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	h, err := r.rdb.HGetAll(ctx, r.key(id)).Result()
	if err != nil {
		return nil, err
	}
	if len(h) == 0 {
		return nil, errRecordGone
	}
	rec := &Record{ID: id, State: h["state"]}
	if err := json.Unmarshal([]byte(h["payload"]), &rec.Payload); err != nil {
		return nil, fmt.Errorf("record %s: payload: %w", id, err)
	}
	created, _ := strconv.ParseInt(h["created_at"], 10, 64)
	rec.CreatedAt = time.UnixMilli(created)
	rec.NotificationID, _ = strconv.ParseInt(h["notification_id"], 10, 64)
	return rec, nil
}

func (r *records) forget(ctx context.Context, id string) error {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	return r.rdb.ZRem(ctx, r.open(), id).Err()
}

var errRecordGone = errors.New("transaction record is gone")

// finishedBefore reports whether record id is gone, or final and last
// updated before cutoff.
func (r *records) finishedBefore(ctx context.Context, id string, cutoff time.Time) (bool, error) {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	v, err := r.rdb.HMGet(ctx, r.key(id), "state", "updated_at").Result()
	if err != nil {
		return false, err
	}
	state, _ := v[0].(string)
	updated, _ := v[1].(string)
	at, _ := strconv.ParseInt(updated, 10, 64)
	switch state {
	case "":
		return true, nil
	case Committed, Aborted:
		return time.UnixMilli(at).Before(cutoff), nil
	}
	return false, nil
}

// state returns a transaction's recorded state ("" when there is none).
func (r *records) state(ctx context.Context, id string) (string, error) {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	s, err := r.rdb.HGet(ctx, r.key(id), "state").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return s, err
}
