package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"

	"tidings/lib/config"
	"tidings/lib/notification"
	"tidings/lib/redisx"
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

// records keeps transaction records: a hash per transaction, and sorted
// sets of the unfinished ones by start time, which recovery scans.
//
// The records are spread over buckets, by a hash of the transaction's
// id, and a record's hash and its bucket's open set share a hash tag
// ({b<n>}): creating a record and moving it to a final state each touch
// both in one step (MULTI, a script), which a Redis Cluster allows only
// within one slot. One tag for every record would put the whole log, and
// every publish's writes to it, on one shard; the buckets spread them
// over as many shards as there are buckets, and recovery and the
// overview read every bucket.
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

// buckets is how many open sets (and hash tags) the records are spread
// over. Changing it orphans the records in flight: recovery no longer
// finds them where it looks.
const buckets = 16

// bucket is the bucket of transaction id.
func bucket(id string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return int(h.Sum32() % buckets)
}

// tag is the key part of bucket b's keys, hash tag included; it comes
// after the prefix, which holds no braces.
func (r *records) tag(b int) string { return r.prefix + "tx:{b" + strconv.Itoa(b) + "}:" }

// key is the record hash of transaction id.
func (r *records) key(id string) string { return r.tag(bucket(id)) + id }

// open is bucket b's set of unfinished records.
func (r *records) open(b int) string { return r.tag(b) + "open" }

// openOf is the open set transaction id is listed in while unfinished.
func (r *records) openOf(id string) string { return r.open(bucket(id)) }

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
		p.ZAdd(ctx, r.openOf(rec.ID), redis.Z{Score: float64(now), Member: rec.ID})
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
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	keys, args := r.transitionArgs(id, from, to, 0)
	res, err := transitionScript.Run(ctx, r.rdb, keys, args...).Result()
	return transitioned(id, from, to, res, err)
}

// decide records the decision to commit, with the notification id the
// persist participant voted. On a cluster it answers only once a replica
// of the record's master has the decision too (redisx.Replicated): a
// failover that took it back to preparing would let recovery roll back a
// transaction its publisher goes on to commit. Waiting for the replica
// extends the call's bound by ReplicaWait; a decision the wait could not
// confirm is an unknown outcome, which abort settles.
func (r *records) decide(ctx context.Context, id string, notificationID int64) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout+redisx.ReplicaWait)
	defer cancel()
	keys, args := r.transitionArgs(id, Preparing, Committing, notificationID)
	var res *redis.Cmd
	_, err := redisx.Replicated(ctx, r.rdb, keys[0], func(p redis.Pipeliner) error {
		// Eval, not Run: inside MULTI a NOSCRIPT answer comes with EXEC,
		// too late to send the script itself instead.
		res = transitionScript.Eval(ctx, p, keys, args...)
		return nil
	})
	if err != nil {
		return transitioned(id, Preparing, Committing, nil, err)
	}
	return transitioned(id, Preparing, Committing, res.Val(), res.Err())
}

// transitionArgs are transitionScript's keys and arguments.
func (r *records) transitionArgs(id, from, to string, notificationID int64) ([]string, []any) {
	final := "0"
	if to == Committed || to == Aborted {
		final = "1"
	}
	return []string{r.key(id), r.openOf(id)},
		[]any{from, to, time.Now().UnixMilli(), final, id, r.ttl.Milliseconds(), notificationID}
}

// transitioned is transition's answer for the script's reply res.
func transitioned(id, from, to string, res any, err error) error {
	if err != nil {
		return fmt.Errorf("record %s -> %s for %s: %w", from, to, id, err)
	}
	if s, _ := res.(string); s != "OK" {
		return &errMoved{state: s}
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

// stuck returns the ids of unfinished records started before cutoff, up
// to stuckBatch of each bucket, read in one pipeline (on a cluster, one
// round trip per shard). A bucket that cannot be read is an error beside
// the ids of the others, so a shard in failover holds back only its own
// records' recovery.
func (r *records) stuck(ctx context.Context, cutoff time.Time) ([]string, error) {
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	cmds := make([]*redis.StringSliceCmd, buckets)
	_, _ = r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range buckets {
			cmds[b] = p.ZRangeArgs(ctx, redis.ZRangeArgs{
				Key: r.open(b), ByScore: true, Start: "-inf", Stop: strconv.FormatInt(cutoff.UnixMilli(), 10), Count: stuckBatch,
			})
		}
		return nil
	})
	var ids []string
	var errs []error
	for b, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			errs = append(errs, fmt.Errorf("unfinished records of bucket %d: %w", b, err))
			continue
		}
		ids = append(ids, cmd.Val()...)
	}
	return ids, errors.Join(errs...)
}

// stuckBatch bounds the records of one bucket one recovery pass finishes.
const stuckBatch = 100

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
	return r.rdb.ZRem(ctx, r.openOf(id), id).Err()
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
