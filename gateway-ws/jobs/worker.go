package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/redis/go-redis/v9"

	"tidings/lib/redisx"
)

// Timing of the workers' loops.
const (
	readBlock       = time.Second     // how long XREADGROUP waits for entries
	discoverEvery   = 2 * time.Second // how often Run looks for functions enqueued elsewhere
	redisOpTimeout  = 5 * time.Second // one Redis command of a worker
	outageFirstWait = 100 * time.Millisecond
	outageMaxWait   = 5 * time.Second
)

// Run runs the workers until ctx is cancelled: per function, a reader of
// its stream with Config.Concurrency slots and a reclaimer of jobs whose
// worker died; and one mover of due retries. Jobs in flight when ctx is
// cancelled are abandoned unacknowledged: a worker (here after a restart,
// or on another replica) reclaims them after ClaimIdle. While Redis is
// unreachable the loops back off and resume by themselves.
func (q *Queue) Run(ctx context.Context) error {
	q.mu.Lock()
	if q.running {
		q.mu.Unlock()
		return errors.New("jobs: Run is already running")
	}
	q.running = true
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.running = false
		q.mu.Unlock()
	}()

	var wg sync.WaitGroup
	started := map[string]bool{}
	start := func(function string) {
		if started[function] || !functionName.MatchString(function) {
			return
		}
		started[function] = true
		w := &worker{q: q, function: function, slots: make(chan struct{}, q.cfg.concurrency(function)),
			log: q.cfg.Log.With("component", "jobs", "function", function)}
		wg.Add(2)
		go func() { defer wg.Done(); w.read(ctx) }()
		go func() { defer wg.Done(); w.reclaim(ctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); q.moveDue(ctx) }()

	discover := time.NewTicker(discoverEvery)
	defer discover.Stop()
	health := q.outage("discover functions")
	for {
		q.mu.Lock()
		for f := range q.known {
			start(f)
		}
		q.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
		names, err := q.rdb.SMembers(rctx, q.functionsKey()).Result()
		cancel()
		if err != nil && ctx.Err() == nil {
			health.failed(err)
		} else {
			health.ok()
		}
		for _, f := range names {
			start(f)
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case f := <-q.kick:
			start(f)
		case <-discover.C:
		}
	}
}

// worker runs one function's jobs.
type worker struct {
	q        *Queue
	function string
	slots    chan struct{} // one per job running
	log      *slog.Logger
	inflight sync.WaitGroup
}

// read reads new entries of the function's stream as slots free up and
// runs each job.
func (w *worker) read(ctx context.Context) {
	defer w.inflight.Wait()
	q, stream := w.q, w.q.streamKey(w.function)
	health := q.outage("read " + stream)
	groupReady := false
	for ctx.Err() == nil {
		if !groupReady {
			if err := q.ensureGroup(ctx, stream); err != nil {
				health.wait(ctx, err)
				continue
			}
			groupReady = true
		}
		// Read only as many entries as there are free slots: an entry read
		// is this worker's until acknowledged or reclaimed.
		select {
		case w.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
	fill:
		for n < cap(w.slots) {
			select {
			case w.slots <- struct{}{}:
				n++
			default:
				break fill
			}
		}
		rctx, cancel := context.WithTimeout(ctx, readBlock+redisOpTimeout)
		res, err := q.rdb.XReadGroup(rctx, &redis.XReadGroupArgs{
			Group: group, Consumer: q.cfg.Consumer, Streams: []string{stream, ">"}, Count: int64(n), Block: readBlock,
		}).Result()
		cancel()
		var msgs []redis.XMessage
		if len(res) > 0 {
			msgs = res[0].Messages
		}
		for range n - len(msgs) {
			<-w.slots
		}
		switch {
		case errors.Is(err, redis.Nil):
			health.ok()
			continue
		case err != nil && isNoGroup(err):
			groupReady = false // Redis lost the group (restarted empty): make it again
			continue
		case err != nil:
			if ctx.Err() == nil {
				health.wait(ctx, err)
			}
			continue
		}
		health.ok()
		for _, m := range msgs {
			w.inflight.Add(1)
			go func() {
				defer w.inflight.Done()
				defer func() { <-w.slots }()
				w.run(ctx, m)
			}()
		}
	}
}

// run makes one attempt at the job of stream entry m.
func (w *worker) run(ctx context.Context, m redis.XMessage) {
	q := w.q
	id, _ := m.Values["id"].(string)
	job, err := q.load(ctx, id)
	if err != nil {
		w.log.Warn("cannot read job; leaving it for reclaim", "job", id, "err", err)
		return
	}
	if job == nil || job.Status.Final() {
		q.drop(ctx, w.function, m.ID) // expired, or a duplicate entry of a finished job
		return
	}
	if job.Attempts >= q.cfg.MaxAttempts {
		w.finish(ctx, m.ID, job, Failed, nil, &Error{Code: "no_attempts_left", Message: "every attempt was used up"})
		return
	}
	job.Attempts++
	if err := q.markWorking(ctx, job); err != nil {
		w.log.Warn("cannot mark job working; leaving it for reclaim", "job", id, "err", err)
		return
	}
	q.notify(ctx, job.Owner, Event{ID: job.ID, Function: job.Function, Status: Working})

	query, body, err := request(q.cfg.method(w.function), job.Payload)
	if err != nil {
		w.finish(ctx, m.ID, job, Failed, nil, &Error{Code: "bad_payload", Message: err.Error()})
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, q.cfg.timeout(w.function))
	answer, err := q.caller.Do(callCtx, w.function, q.cfg.method(w.function), query, body)
	timedOut := errors.Is(callCtx.Err(), context.DeadlineExceeded)
	cancel()
	if ctx.Err() != nil {
		// This worker is stopping: leave the entry unacknowledged so that
		// another worker reclaims it, as if this one had died.
		w.log.Info("worker stopping; job left for reclaim", "job", id)
		return
	}
	if err == nil {
		result := encodeResult(answer)
		if len(result) > q.cfg.MaxResultBytes {
			w.finish(ctx, m.ID, job, Failed, nil, &Error{Code: "result_too_large",
				Message: fmt.Sprintf("the answer is larger than %d bytes", q.cfg.MaxResultBytes)})
			return
		}
		w.finish(ctx, m.ID, job, Worked, result, nil)
		return
	}
	jerr, retry := outcome(err, w.function, timedOut)
	w.log.Info("job attempt failed", "job", id, "attempt", job.Attempts, "retry", retry, "err", err)
	if retry && job.Attempts < q.cfg.MaxAttempts {
		w.retry(ctx, m.ID, job, jerr)
		return
	}
	w.finish(ctx, m.ID, job, Failed, nil, jerr)
}

// finish records a job's final status and acknowledges its entry in one
// MULTI; a failed job is also copied to the dead-letter stream.
func (w *worker) finish(ctx context.Context, entry string, job *Job, status Status, result json.RawMessage, jerr *Error) {
	q := w.q
	err := q.write(ctx, "finish job "+job.ID, q.jobKey(job.ID), func(p redis.Pipeliner) {
		fields := map[string]any{"status": string(status), "updated_at": time.Now().UnixMilli(), "attempts": job.Attempts}
		if result != nil {
			fields["result"] = string(result)
		}
		if jerr != nil {
			b, _ := json.Marshal(jerr)
			fields["error"] = string(b)
		}
		p.HSet(ctx, q.jobKey(job.ID), fields)
		p.PExpire(ctx, q.jobKey(job.ID), q.cfg.TTL)
		if status == Failed {
			b, _ := json.Marshal(jerr)
			p.XAdd(ctx, &redis.XAddArgs{Stream: q.deadKey(), MaxLen: deadLetterMaxLen, Approx: true, Values: map[string]any{
				"id": job.ID, "function": job.Function, "owner": job.Owner, "attempts": job.Attempts,
				"payload": string(job.Payload), "error": string(b),
			}})
		}
		p.XAck(ctx, q.streamKey(w.function), group, entry)
		p.XDel(ctx, q.streamKey(w.function), entry)
	})
	if err != nil {
		w.log.Warn("cannot record the job's outcome; it will be reclaimed and run again", "job", job.ID, "err", err)
		return
	}
	if status == Failed {
		w.log.Warn("job failed", "job", job.ID, "attempts", job.Attempts, "code", jerr.Code, "message", jerr.Message)
	}
	q.notify(ctx, job.Owner, Event{ID: job.ID, Function: job.Function, Status: status, Result: result, Error: jerr})
}

// retry schedules the job's next attempt after its backoff and
// acknowledges the entry, in one MULTI.
func (w *worker) retry(ctx context.Context, entry string, job *Job, jerr *Error) {
	q := w.q
	due := time.Now().Add(q.cfg.backoff(max(job.Attempts, 1), jitter))
	b, _ := json.Marshal(jerr)
	err := q.write(ctx, "schedule retry of job "+job.ID, q.jobKey(job.ID), func(p redis.Pipeliner) {
		p.HSet(ctx, q.jobKey(job.ID), map[string]any{"status": string(Pending), "updated_at": time.Now().UnixMilli(),
			"attempts": job.Attempts, "error": string(b)})
		p.PExpire(ctx, q.jobKey(job.ID), q.liveTTL(job.Function))
		p.ZAdd(ctx, q.delayedKey(), redis.Z{Score: float64(due.UnixMilli()), Member: job.Function + " " + job.ID})
		p.XAck(ctx, q.streamKey(w.function), group, entry)
		p.XDel(ctx, q.streamKey(w.function), entry)
	})
	if err != nil {
		w.log.Warn("cannot schedule the retry; the job will be reclaimed", "job", job.ID, "err", err)
		return
	}
	q.notify(ctx, job.Owner, Event{ID: job.ID, Function: job.Function, Status: Pending, Error: jerr})
}

// reclaim takes over entries that sat with a worker longer than ClaimIdle
// (it died, or lost Redis before it could record the outcome) and
// schedules their retry, or fails them when they used every attempt.
func (w *worker) reclaim(ctx context.Context) {
	q, stream := w.q, w.q.streamKey(w.function)
	health := q.outage("reclaim " + stream)
	tick := time.NewTicker(max(q.cfg.ClaimIdle/4, 50*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		start := "0-0"
		for ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
			msgs, next, err := q.rdb.XAutoClaim(rctx, &redis.XAutoClaimArgs{
				Stream: stream, Group: group, Consumer: q.cfg.Consumer, MinIdle: q.cfg.ClaimIdle, Start: start, Count: 100,
			}).Result()
			cancel()
			if err != nil {
				if !isNoGroup(err) && ctx.Err() == nil { // no group yet: the reader makes it
					health.wait(ctx, err)
				}
				break
			}
			health.ok()
			for _, m := range msgs {
				w.reclaimed(ctx, m)
			}
			if next == "0-0" || next == "" {
				break
			}
			start = next
		}
	}
}

func (w *worker) reclaimed(ctx context.Context, m redis.XMessage) {
	q := w.q
	id, _ := m.Values["id"].(string)
	job, err := q.load(ctx, id)
	if err != nil {
		return // still pending; the next round tries again
	}
	if job == nil || job.Status.Final() {
		q.drop(ctx, w.function, m.ID)
		return
	}
	w.log.Warn("reclaimed a job whose worker stopped", "job", id, "attempts", job.Attempts)
	lost := &Error{Code: "worker_lost", Message: "the worker running the job stopped before it finished"}
	if job.Attempts >= q.cfg.MaxAttempts {
		w.finish(ctx, m.ID, job, Failed, nil, lost)
		return
	}
	w.retry(ctx, m.ID, job, lost)
}

// moveScript moves due retries back into their function's stream, each
// atomically, so that replicas running it together move each one once.
// KEYS[1] the delayed set; ARGV: now (ms), batch size, stream key prefix.
// The streams it names are not in KEYS, which a cluster allows because
// they carry the delayed set's hash tag.
var moveScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local sp = string.find(member, ' ', 1, true)
  redis.call('ZREM', KEYS[1], member)
  if sp then
    redis.call('XADD', ARGV[3] .. string.sub(member, 1, sp - 1), '*', 'id', string.sub(member, sp + 1))
  end
end
return #due`)

// moveDue runs moveScript until ctx is cancelled.
func (q *Queue) moveDue(ctx context.Context) {
	every := min(max(q.cfg.BackoffBase/2, 20*time.Millisecond), 500*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	health := q.outage("move due retries")
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
		n, err := moveScript.Run(rctx, q.rdb, []string{q.delayedKey()}, time.Now().UnixMilli(), 100, q.keys()+"stream:").Int()
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				health.wait(ctx, err)
			}
			continue
		}
		health.ok()
		if n == 100 {
			tick.Reset(time.Millisecond) // more are due: go on at once
		} else {
			tick.Reset(every)
		}
	}
}

// load reads a job; nil when its record is gone.
func (q *Queue) load(ctx context.Context, id string) (*Job, error) {
	rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	job, err := q.Get(rctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return job, err
}

// markWorking is not waited for by a replica (see the package comment).
func (q *Queue) markWorking(ctx context.Context, job *Job) error {
	rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	_, err := q.rdb.TxPipelined(rctx, func(p redis.Pipeliner) error {
		p.HSet(rctx, q.jobKey(job.ID), "status", string(Working), "attempts", job.Attempts, "updated_at", time.Now().UnixMilli())
		p.PExpire(rctx, q.jobKey(job.ID), q.liveTTL(job.Function))
		return nil
	})
	return err
}

// drop acknowledges and deletes an entry with nothing left to do.
func (q *Queue) drop(ctx context.Context, function, entry string) {
	_ = q.write(ctx, "drop entry "+entry, q.streamKey(function), func(p redis.Pipeliner) {
		p.XAck(ctx, q.streamKey(function), group, entry)
		p.XDel(ctx, q.streamKey(function), entry)
	})
}

// write runs one MULTI on keys of key's slot and waits for a replica to
// have it (redisx.Replicated), retried with the outage backoff for up to
// half of ClaimIdle so that a short Redis outage or a failover does not
// turn a finished attempt into a reclaimed one. The first try runs even
// when ctx is cancelled (the attempt is over either way); a stopping
// worker does not wait for Redis to come back.
func (q *Queue) write(ctx context.Context, what, key string, cmds func(redis.Pipeliner)) error {
	stopping := ctx
	ctx = context.WithoutCancel(ctx)
	var last error
	try := func() (struct{}, error) {
		rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
		defer cancel()
		_, last = redisx.Replicated(rctx, q.rdb, key, func(p redis.Pipeliner) error { cmds(p); return nil })
		return struct{}{}, last
	}
	if _, err := backoff.Retry(stopping, try, backoff.WithBackOff(outageBackOff()), backoff.WithMaxElapsedTime(q.cfg.ClaimIdle/2)); err != nil {
		return fmt.Errorf("%s: %w", what, last)
	}
	return nil
}

func (q *Queue) ensureGroup(ctx context.Context, stream string) error {
	rctx, cancel := context.WithTimeout(ctx, redisOpTimeout)
	defer cancel()
	// From "0": entries added before the group existed are jobs too.
	err := q.rdb.XGroupCreateMkStream(rctx, stream, group, "0").Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create group on %s: %w", stream, err)
	}
	return nil
}

func isNoGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOGROUP") }

// outageBackOff spaces out the tries of a loop that cannot reach Redis:
// outageFirstWait doubled per try, at most outageMaxWait.
func outageBackOff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: outageFirstWait, Multiplier: 2, MaxInterval: outageMaxWait}
}

// outage tracks one loop's trouble with Redis: it logs when Redis goes
// away and when it is back, and spaces the loop's tries out meanwhile.
type outage struct {
	log   *slog.Logger
	what  string
	down  bool
	waits *backoff.ExponentialBackOff
}

func (q *Queue) outage(what string) *outage {
	return &outage{log: q.cfg.Log.With("component", "jobs"), what: what, waits: outageBackOff()}
}

// failed records a failure, logging the first of a run.
func (o *outage) failed(err error) {
	if !o.down {
		o.log.Warn("redis unavailable; backing off", "loop", o.what, "err", err)
		o.down = true
	}
}

// wait records a failure and sleeps before the next try.
func (o *outage) wait(ctx context.Context, err error) {
	o.failed(err)
	t := time.NewTimer(o.waits.NextBackOff())
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func (o *outage) ok() {
	if o.down {
		o.log.Info("redis is back", "loop", o.what)
	}
	o.down = false
	o.waits.Reset()
}
