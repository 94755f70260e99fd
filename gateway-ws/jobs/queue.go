// Package jobs is gateway-ws's async job queue: slow work (mail, avatar
// rendering) runs as jobs that a client or gateway-ws enqueues, a worker
// runs by calling a function, and the owner tracks by id.
//
// Jobs sit in Redis Streams, one per function, read by a consumer group
// shared by every gateway-ws replica. A job's record is a Redis hash; its
// status goes
//
//	accepted → working → worked
//	                   ↘ pending (a retry is scheduled) → working → …
//	                   ↘ failed (refused, or out of attempts; also in the dead-letter stream)
//
// A worker acknowledges a stream entry (XACK) in the same MULTI that writes
// the job's new status, so a job is never acknowledged without its outcome
// recorded. A job whose worker died stays pending in the group; after
// ClaimIdle another worker reclaims it (XAUTOCLAIM) and schedules a retry.
// Retries wait in a sorted set (exponential backoff with jitter) until due,
// then go back into their stream. After MaxAttempts the job fails and a copy
// goes to the dead-letter stream. A finished job's record expires TTL after
// it finished; then GET answers 404.
//
// Delivery is at-least-once: a function a job calls must be idempotent or
// guard itself (send-mail does, by idempotency key).
//
// Redis keys, all under Config.Prefix + "{jobs}:": job:<id> (hash),
// stream:<function> (stream, group "workers"), delayed (sorted set of
// "<function> <id>" by due time), dead (stream), functions (set of
// function names seen).
//
// On a Redis Cluster the whole queue lives on one shard: every key carries
// the hash tag {jobs}, because almost every write touches several of them
// at once (enqueue: the record, the function set and a stream; finish: the
// record, a stream and the dead-letter stream; a retry: the record, a
// stream and the delayed set; the mover of due retries: the delayed set
// and any stream) and a MULTI or a script may only touch keys of one slot.
// Tags per job or per function would split those writes into steps that a
// crash between them leaves half done. The queue's load (a few writes per
// job) is small beside one shard's capacity.
//
// An accepted job survives a failover of that shard's master: Enqueue
// answers only once a replica has the job, or after waiting a second for
// one (redisx.Replicated), and so do the writes that end an attempt
// (outcome, retry, dead letter), so that a promoted replica neither loses
// a job nor runs a finished one again. The writes left unwaited are those
// whose loss costs nothing but a repeat: marking a job working (it is
// marked again on its next attempt), moving a due retry into its stream
// (the retry stays in the delayed set and is moved again) and a worker's
// read of an entry (the entry is read again: delivery is at-least-once).
package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/gateway-ws/invoke"
	"tidings/lib/auth"
	"tidings/lib/redisx"
)

// Caller calls a function; *invoke.Invoker is one (breaker, timeout,
// concurrency limit and the internal key included). Non-2xx answers are
// *invoke.CallError.
type Caller interface {
	Do(ctx context.Context, name, method, query string, body []byte) (*invoke.Answer, error)
}

// Status is where a job is in its life.
type Status string

// The statuses.
const (
	Accepted Status = "accepted" // stored and queued, not tried yet
	Pending  Status = "pending"  // an attempt failed; a retry is scheduled
	Working  Status = "working"  // a worker is calling the function
	Worked   Status = "worked"   // done; Result holds the answer
	Failed   Status = "failed"   // given up; Error says why
)

// Final reports whether a job in status s is done.
func (s Status) Final() bool { return s == Worked || s == Failed }

// Job is a job's record, as GET /api/jobs/<id> shows it.
type Job struct {
	ID       string `json:"id"`
	Function string `json:"function"`
	Status   Status `json:"status"`
	// Result is the function's answer: JSON answers as they are, any other
	// (image/png) as {"content_type","body_base64"}.
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *Error          `json:"error,omitempty"` // why it failed, or why the last attempt did
	Attempts  int             `json:"attempts"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`

	Owner   int64           `json:"-"`
	Payload json.RawMessage `json:"-"`
}

// Error is why an attempt failed: the function's own error code and
// message when it answered, or one of ours (timeout, unavailable,
// worker_lost, result_too_large).
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Status  int    `json:"status,omitempty"` // the function's HTTP status, when it answered
}

// Event is what Notify gets on every status change.
type Event struct {
	ID       string          `json:"id"`
	Function string          `json:"function"`
	Status   Status          `json:"status"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    *Error          `json:"error,omitempty"`
}

// Errors of Enqueue and Get.
var (
	ErrNotFound   = errors.New("no such job")
	ErrBadPayload = errors.New("bad job payload")
)

// group is the consumer group every replica's workers share.
const group = "workers"

// deadLetterMaxLen roughly bounds the dead-letter stream.
const deadLetterMaxLen = 10000

var (
	functionName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	jobID        = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// Queue is the job queue: Enqueue and Get from Go, Handler for clients,
// Run for the workers.
type Queue struct {
	rdb    redis.UniversalClient
	caller Caller
	tokens *auth.Tokens
	cfg    Config

	mu      sync.Mutex
	known   map[string]bool // functions enqueued through this Queue
	kick    chan string     // tells a running Run about a new function
	running bool
}

// New returns a Queue on rdb calling functions through caller; tokens
// authenticate the HTTP API.
func New(rdb redis.UniversalClient, caller Caller, tokens *auth.Tokens, cfg Config) (*Queue, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Queue{rdb: rdb, caller: caller, tokens: tokens, cfg: cfg, known: map[string]bool{}, kick: make(chan string, 16)}, nil
}

// keys starts every key of the queue: the prefix, then the hash tag that
// puts them all in one slot of a cluster (see the package comment).
func (q *Queue) keys() string { return q.cfg.Prefix + "{jobs}:" }

func (q *Queue) jobKey(id string) string          { return q.keys() + "job:" + id }
func (q *Queue) streamKey(function string) string { return q.keys() + "stream:" + function }
func (q *Queue) delayedKey() string               { return q.keys() + "delayed" }
func (q *Queue) deadKey() string                  { return q.keys() + "dead" }
func (q *Queue) functionsKey() string             { return q.keys() + "functions" }

// liveTTL bounds an unfinished job's record: long enough for every attempt,
// backoff and reclaim, so only a job lost with its stream ever expires
// unfinished.
func (q *Queue) liveTTL(function string) time.Duration {
	per := q.cfg.timeout(function) + q.cfg.BackoffMax + q.cfg.ClaimIdle
	return q.cfg.TTL + time.Duration(q.cfg.MaxAttempts)*per
}

// Enqueue stores a job for owner calling function with payload (a JSON
// object; nil means {}) and queues it. Any function may be named here;
// clients are limited to Config.PublicFunctions by the HTTP API. A payload
// a GET function cannot take as a query string is ErrBadPayload.
func (q *Queue) Enqueue(ctx context.Context, owner int64, function string, payload json.RawMessage) (string, error) {
	if !functionName.MatchString(function) {
		return "", fmt.Errorf("%w: %q is not a function name", ErrBadPayload, function)
	}
	if len(payload) == 0 {
		payload = json.RawMessage(`{}`)
	}
	if _, _, err := request(q.cfg.method(function), payload); err != nil {
		return "", err
	}
	id := newID()
	now := time.Now()
	_, err := redisx.Replicated(ctx, q.rdb, q.jobKey(id), func(p redis.Pipeliner) error {
		p.HSet(ctx, q.jobKey(id), map[string]any{
			"id": id, "function": function, "owner": owner, "status": string(Accepted), "attempts": 0,
			"payload": string(payload), "created_at": now.UnixMilli(), "updated_at": now.UnixMilli(),
		})
		p.PExpire(ctx, q.jobKey(id), q.liveTTL(function))
		p.SAdd(ctx, q.functionsKey(), function)
		p.XAdd(ctx, &redis.XAddArgs{Stream: q.streamKey(function), Values: map[string]any{"id": id}})
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("enqueue %s job: %w", function, err)
	}
	q.learn(function)
	q.notify(ctx, owner, Event{ID: id, Function: function, Status: Accepted})
	return id, nil
}

// Get returns the job with id, or ErrNotFound once it expired (or never
// was).
func (q *Queue) Get(ctx context.Context, id string) (*Job, error) {
	if !jobID.MatchString(id) {
		return nil, ErrNotFound
	}
	fields, err := q.rdb.HGetAll(ctx, q.jobKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("read job %s: %w", id, err)
	}
	if len(fields) == 0 || fields["function"] == "" {
		return nil, ErrNotFound
	}
	return parseJob(fields), nil
}

func parseJob(f map[string]string) *Job {
	j := &Job{ID: f["id"], Function: f["function"], Status: Status(f["status"])}
	j.Owner, _ = strconv.ParseInt(f["owner"], 10, 64)
	j.Attempts, _ = strconv.Atoi(f["attempts"])
	created, _ := strconv.ParseInt(f["created_at"], 10, 64)
	updated, _ := strconv.ParseInt(f["updated_at"], 10, 64)
	j.CreatedAt, j.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	j.Payload = json.RawMessage(f["payload"])
	if r := f["result"]; r != "" {
		j.Result = json.RawMessage(r)
	}
	if e := f["error"]; e != "" {
		j.Error = &Error{}
		if json.Unmarshal([]byte(e), j.Error) != nil {
			j.Error = &Error{Code: "unknown", Message: e}
		}
	}
	return j
}

// learn records a function this Queue enqueued, and tells a running Run to
// start its workers now rather than at its next look at the function set.
func (q *Queue) learn(function string) {
	q.mu.Lock()
	isNew := !q.known[function]
	q.known[function] = true
	running := q.running
	q.mu.Unlock()
	if isNew && running {
		select {
		case q.kick <- function:
		default: // Run finds it at its next look
		}
	}
}

// notify calls Config.Notify, under a short deadline of its own.
func (q *Queue) notify(ctx context.Context, owner int64, ev Event) {
	if q.cfg.Notify == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	q.cfg.Notify(ctx, owner, ev)
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func jitter(d time.Duration) time.Duration { return mrand.N(d) }
