// Package failover is the system test of a Redis Cluster failover under a
// running stack (issue 17): the stack's processes as they run in
// production, on a throwaway cluster of their own, lose a master mid-run
// and must carry on by themselves once its replica is promoted.
package failover

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/gateway-ws/coordinator"
	"tidings/gateway-ws/jobs"
	"tidings/infra/proc"
	"tidings/infra/stackrun"
	"tidings/lib/config"
	"tidings/lib/store"
)

// The run's size: small enough for ~90 s with the build, large enough
// that keys of every kind (records, job streams, presence, cache) are
// spread over the masters.
const (
	subscribers   = 4  // users with a socket each, every one subscribed to the topic
	publishTarget = 10 // publishes answered ok wanted before the kill, and again after the failover
	maxPublishes  = 400
	jobsBefore    = 6 // jobs enqueued before the kill, and again after the failover
	maxJobsDuring = 40
	// maxFailedBefore is how many publishes may fail before the kill
	// before the run goes on without publishTarget ok ones: a stack that
	// cannot publish at all is reported, and the rest of the run still
	// says what else holds.
	maxFailedBefore = 40
)

// Phases of the run, as the publisher and the job enqueuer see them.
const (
	before int32 = iota
	during       // from the kill until the cluster is healthy again
	after
)

// Gateway settings for a throwaway run: recovery and the job queue's
// reclaim and backoff in seconds rather than production's minutes, so that
// what the failover left unfinished is finished within the test's bounded
// waits.
var gatewayEnv = []string{
	"RECOVERY_INTERVAL=300ms", "RECOVERY_STUCK_AFTER=1500ms", "PHASE_TWO_TIMEOUT=2s",
	"JOB_TIMEOUT=4s", "JOB_CLAIM_IDLE=5s", "JOB_BACKOFF_BASE=200ms", "JOB_BACKOFF_MAX=1s",
}

// TestRedisClusterMasterKilledMidRunRecoversByItself runs the function
// host and two gateway-ws replicas on a Redis Cluster of 3 masters with a
// replica each. Subscribers hold WebSockets (spread over both gateways)
// joined to their user channel and the topic, the topic's owner publishes
// through the gateways, and gen-avatar jobs are enqueued. Once publishes
// flow, the master holding most of the stack's keys is killed (SIGKILL);
// the publisher and the enqueuer carry on through the failover, and on
// after the replica is promoted. Then what must hold: no socket and no
// channel was ended by the server, publishes are answered ok again after
// the failover and every socket receives them, no transaction record is
// left unfinished, the invariant holds (store.CheckInvariant), every
// publish answered ok is committed, and every job accepted (202) reaches
// a final status.
func TestRedisClusterMasterKilledMidRunRecoversByItself(t *testing.T) {
	// The binaries are built, and the function host reads stack.yml, from
	// the module's root, as the tools that run stacks run them.
	t.Chdir("../..")
	// The build is bounded by the test's own -timeout only: on a machine
	// busy with other builds it takes minutes, the run itself does not.
	bin, err := stackrun.Build(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	r := newRun(ctx, t, bin)

	r.startPublishing(ctx)
	r.enqueueJobs(ctx, jobsBefore)
	r.waitPublishes(ctx, before)
	r.killBusiestMaster(ctx)
	r.phase.Store(during)
	enqueued := r.enqueueWhile(ctx, during)
	r.waitFailover(ctx)
	r.phase.Store(after)
	<-enqueued
	r.enqueueJobs(ctx, jobsBefore)
	r.publishing.Wait()
	r.verify(ctx)
}

// run is one test's stack, users, sockets and counts.
type run struct {
	t        *testing.T
	stack    *stackrun.Stack
	cluster  *proc.RedisCluster
	gateways []*stackrun.Node
	tx       *coordinator.Coordinator // reads the records through the coordinator's API; publishes nothing

	topic      int64
	ownerToken string
	users      []user
	sockets    []*socket

	phase      atomic.Int32
	publishing sync.WaitGroup
	killed     string // the killed master's address
	keysOnIt   int

	mu        sync.Mutex
	ok        [3][]int64 // notification ids answered ok, by the phase they were sent in
	failed    [3]int     // publishes not answered ok, by phase
	lastErr   [3]error   // the last one's answer, by phase
	accepted  []acceptedJob
	refused   [3]int        // enqueues not answered 202, by phase
	refusal   error         // the last one's answer
	published chan struct{} // a publish was answered
	publisher chan struct{} // closed when the publisher stops
}

type user struct {
	id    int64
	token string
}

type acceptedJob struct {
	id    string
	owner user
	phase int32
}

func newRun(ctx context.Context, t *testing.T, bin stackrun.Binaries) *run {
	r := &run{t: t, published: make(chan struct{}, 1), publisher: make(chan struct{})}
	// STACK_KEEP=1 keeps the stack's logs for reading after a failure.
	var settings stackrun.Settings
	if err := config.Parse(&settings); err != nil {
		t.Fatal(err)
	}
	var err error
	if r.stack, err = bin.New(ctx, "failover", settings); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stack.Close)
	t.Cleanup(func() {
		if t.Failed() && settings.Keep {
			t.Logf("the stack's logs are in %s", r.stack.Dir)
		}
	})
	if r.cluster, err = r.stack.OwnRedisCluster(ctx, 3, 1); err != nil {
		t.Fatal(err)
	}
	r.tx = coordinator.New(coordinator.Config{Redis: r.stack.Redis, Prefix: r.stack.Prefix})
	t.Cleanup(func() { _ = r.tx.Close() })
	host, err := r.stack.StartHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		g, err := r.stack.StartGateway(ctx, host, gatewayEnv...)
		if err != nil {
			t.Fatal(err)
		}
		r.gateways = append(r.gateways, g)
	}
	call := func(function, token string, body, out any) {
		t.Helper()
		if err := stackrun.Post(ctx, "http://"+host.Addr+"/function/"+function, token, body, out); err != nil {
			t.Fatal(err)
		}
	}
	register := func(email string) user {
		var out struct {
			User  store.User
			Token string
		}
		call("register", "", map[string]string{"email": email, "password": "failover-password", "name": "failover"}, &out)
		return user{out.User.ID, out.Token}
	}
	owner := register("owner@failover.test")
	var created struct{ Topic store.Topic }
	call("create-topic", owner.token, map[string]string{"name": "failover"}, &created)
	r.topic, r.ownerToken = created.Topic.ID, owner.token
	for i := range subscribers {
		u := register(fmt.Sprintf("sub%d@failover.test", i))
		call("subscribe", u.token, map[string]int64{"topic_id": r.topic}, nil)
		r.users = append(r.users, u)
		dialCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		s, err := dial(dialCtx, r.gateways[i%len(r.gateways)].Addr, u.token, u.id, r.topic)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		r.sockets = append(r.sockets, s)
		t.Cleanup(s.close)
	}
	return r
}

// gateway is the i-th request's gateway: requests alternate, so that
// both replicas publish and fan out to sockets on the other.
func (r *run) gateway(i int) string { return "http://" + r.gateways[i%len(r.gateways)].Addr }

// startPublishing publishes as the topic's owner, one publish after
// another, until publishTarget are answered ok after the failover or
// maxPublishes were sent; each answer is counted under the phase the
// publish was sent in.
func (r *run) startPublishing(ctx context.Context) {
	r.publishing.Add(1)
	go func() {
		defer r.publishing.Done()
		defer close(r.publisher)
		for i := 0; i < maxPublishes && ctx.Err() == nil; i++ {
			phase := r.phase.Load()
			var out struct {
				NotificationID int64 `json:"notification_id"`
			}
			err := stackrun.Post(ctx, fmt.Sprintf("%s/api/topics/%d/notifications", r.gateway(i), r.topic), r.ownerToken,
				map[string]string{"title": fmt.Sprintf("failover %d", i), "body": "payload"}, &out)
			r.mu.Lock()
			if err == nil && out.NotificationID != 0 {
				r.ok[phase] = append(r.ok[phase], out.NotificationID)
			} else {
				r.failed[phase]++
				r.lastErr[phase] = err
			}
			okAfter := len(r.ok[after])
			r.mu.Unlock()
			select {
			case r.published <- struct{}{}:
			default:
			}
			if okAfter >= publishTarget {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
}

// waitPublishes waits until publishTarget publishes sent in phase were
// answered ok, and fails the test (the run goes on) once maxFailedBefore
// failed or the publisher stopped first.
func (r *run) waitPublishes(ctx context.Context, phase int32) {
	for stopped := false; ; {
		r.mu.Lock()
		ok, failed, lastErr := len(r.ok[phase]), r.failed[phase], r.lastErr[phase]
		r.mu.Unlock()
		switch {
		case ok >= publishTarget:
			return
		case failed >= maxFailedBefore || stopped || ctx.Err() != nil:
			r.t.Errorf("only %d publishes answered ok before the kill (%d failed, the last with %v), want %d", ok, failed, lastErr, publishTarget)
			return
		}
		select {
		case <-r.published:
		case <-r.publisher:
			stopped = true
		case <-ctx.Done():
		}
	}
}

// enqueueJobs enqueues n gen-avatar jobs, each as one of the subscribers,
// through alternating gateways.
func (r *run) enqueueJobs(ctx context.Context, n int) {
	for i := range n {
		r.enqueue(ctx, i)
	}
}

// enqueueWhile enqueues a job every 200 ms (at most maxJobsDuring) while
// the run is in phase; the channel is closed when it stops.
func (r *run) enqueueWhile(ctx context.Context, phase int32) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < maxJobsDuring && r.phase.Load() == phase && ctx.Err() == nil; i++ {
			r.enqueue(ctx, i)
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return done
}

func (r *run) enqueue(ctx context.Context, i int) {
	phase := r.phase.Load()
	owner := r.users[i%len(r.users)]
	var out struct{ ID string }
	err := stackrun.Post(ctx, r.gateway(i)+"/api/jobs/gen-avatar", owner.token,
		map[string]any{"seed": fmt.Sprintf("failover-%d-%d", phase, i), "size": 16}, &out)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil || out.ID == "" {
		r.refused[phase]++
		r.refusal = err
		return
	}
	r.accepted = append(r.accepted, acceptedJob{out.ID, owner, phase})
}

// killBusiestMaster kills (SIGKILL) the master holding the most keys under
// the stack's prefix. The keys' names are being given hash tags, so which
// master holds the topic's broker channel, the job stream or the records
// is not asked of the code: the master with the most of the stack's keys
// is the one whose loss touches the most of what matters (pub/sub channels
// are no keys, and are wherever their slot is).
func (r *run) killBusiestMaster(ctx context.Context) {
	// A cluster that failed on its own (a node overwhelmed on a busy
	// machine) would make the kill's consequences unreadable, and a
	// replica not synced yet could not be promoted (WaitHealthy waits
	// for both).
	if err := r.cluster.WaitHealthy(ctx, 30*time.Second); err != nil {
		r.t.Fatalf("the cluster is not healthy before the kill: %v", err)
	}
	masters, err := r.cluster.Masters(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	var busiest *proc.RedisNode
	for _, m := range masters {
		n, err := countKeys(ctx, m.Addr, r.stack.Prefix)
		if err != nil {
			r.t.Fatal(err)
		}
		r.t.Logf("master %s holds %d keys under %s", m.Addr, n, r.stack.Prefix)
		if busiest == nil || n > r.keysOnIt {
			busiest, r.keysOnIt = m, n
		}
	}
	r.killed = busiest.Addr
	busiest.Kill()
}

// countKeys counts the keys under prefix on the node at addr alone.
func countKeys(ctx context.Context, addr, prefix string) (int, error) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	n := 0
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	return n, iter.Err()
}

// waitFailover waits until the killed master's replica is promoted (as
// many running masters as before the kill) and every running node agrees
// the cluster is ok. The promotion is waited for first: until the other
// nodes mark the master failed (cluster-node-timeout), they still report
// the cluster ok.
func (r *run) waitFailover(ctx context.Context) {
	err := proc.WaitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		masters, err := r.cluster.Masters(ctx)
		if err == nil && len(masters) < 3 {
			err = fmt.Errorf("%d masters running, the killed one's replica not promoted yet", len(masters))
		}
		return err
	})
	if err == nil {
		err = r.cluster.WaitHealthy(ctx, 30*time.Second)
	}
	if err != nil {
		r.t.Fatalf("the cluster did not fail over: %v", err)
	}
}

// verify checks what must hold after the run and logs the counts.
func (r *run) verify(ctx context.Context) {
	t := r.t
	r.mu.Lock()
	okAfter := slices.Clone(r.ok[after])
	answeredOK := slices.Concat(r.ok[before], r.ok[during], r.ok[after])
	accepted := slices.Clone(r.accepted)
	r.mu.Unlock()

	if len(okAfter) < publishTarget {
		t.Errorf("%d publishes answered ok after the failover, want %d (of at most %d sent in all)", len(okAfter), publishTarget, maxPublishes)
	}
	// Every socket must receive every notification answered ok, before,
	// during and after the failover: live, or filled in by the gateway
	// once its subscription is back (replay.go's fillGaps).
	err := proc.WaitFor(ctx, 15*time.Second, func(context.Context) error {
		for _, s := range r.sockets {
			for _, id := range answeredOK {
				if !s.saw(id) {
					return fmt.Errorf("the socket of user %d on %s has not received notification %d", s.user, s.gateway, id)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("a notification answered ok did not reach every socket: %v", err)
	}

	err = proc.WaitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		open, err := r.tx.OpenTransactions(ctx)
		if err == nil && open > 0 {
			err = fmt.Errorf("%d transaction records still unfinished", open)
		}
		if err == nil {
			err = store.CheckInvariant(ctx, r.stack.DBs.Persist, r.stack.DBs.Counter)
		}
		return err
	})
	if err != nil {
		t.Errorf("after the failover: %v", err)
	}
	var committed int
	if err := r.stack.DBs.Persist.QueryRow(ctx,
		`SELECT count(*) FROM notifications WHERE state = 'committed' AND id = ANY($1)`, answeredOK).Scan(&committed); err != nil {
		t.Fatal(err)
	}
	if committed != len(answeredOK) {
		t.Errorf("%d publishes were answered ok but only %d of them are committed", len(answeredOK), committed)
	}

	worked, failed, unfinished := r.finishJobs(ctx, accepted)
	if len(unfinished) > 0 {
		t.Errorf("%d of %d accepted jobs never reached a final status: %v", len(unfinished), len(accepted), unfinished)
	}

	socketsClosed := 0
	for _, s := range r.sockets {
		if s.closedByServer() {
			socketsClosed++
		}
		if err := s.ended(); err != nil {
			t.Errorf("the socket of user %d on %s: %v", s.user, s.gateway, err)
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	jobsIn := [3]int{}
	for _, j := range accepted {
		jobsIn[j.phase]++
	}
	seen := make([]string, len(r.sockets))
	for i, s := range r.sockets {
		seen[i] = fmt.Sprintf("%d/%d", s.seenOf(okAfter), len(okAfter))
	}
	t.Logf("killed master %s, which held %d of the stack's keys", r.killed, r.keysOnIt)
	t.Log("| what | before the kill | during the failover | after it |")
	t.Log("| --- | ---: | ---: | ---: |")
	t.Logf("| publishes answered ok | %d | %d | %d |", len(r.ok[before]), len(r.ok[during]), len(r.ok[after]))
	t.Logf("| publishes failed | %d | %d | %d |", r.failed[before], r.failed[during], r.failed[after])
	t.Logf("| jobs accepted (202) | %d | %d | %d |", jobsIn[before], jobsIn[during], jobsIn[after])
	t.Logf("| jobs refused (not 202) | %d | %d | %d |", r.refused[before], r.refused[during], r.refused[after])
	if r.refusal != nil {
		t.Logf("the last enqueue refused: %v", r.refusal)
	}
	t.Logf("jobs worked %d, failed %d, unfinished %d; sockets closed by the server %d of %d; notifications after the failover received per socket %v",
		worked, failed, len(unfinished), socketsClosed, len(r.sockets), seen)
}

// finishJobs waits (bounded) until every accepted job has a final status
// and counts them; unfinished lists the ids of those that never got one,
// with their last status (a 404 is a job lost).
func (r *run) finishJobs(ctx context.Context, accepted []acceptedJob) (worked, failed int, unfinished []string) {
	final := map[string]jobs.Job{}
	last := map[string]string{}
	_ = proc.WaitFor(ctx, 30*time.Second, func(ctx context.Context) error {
		var waiting []error
		for i, j := range accepted {
			if _, ok := final[j.id]; ok {
				continue
			}
			var job jobs.Job
			if err := stackrun.Get(ctx, r.gateway(i)+"/api/jobs/"+j.id, j.owner.token, &job); err != nil {
				last[j.id] = err.Error()
				waiting = append(waiting, err)
				continue
			}
			last[j.id] = string(job.Status)
			if !job.Status.Final() {
				waiting = append(waiting, fmt.Errorf("job %s is %s", j.id, job.Status))
				continue
			}
			final[j.id] = job
		}
		return errors.Join(waiting...)
	})
	for _, j := range accepted {
		job, ok := final[j.id]
		switch {
		case !ok:
			unfinished = append(unfinished, j.id+" ("+last[j.id]+")")
		case job.Status == jobs.Worked:
			worked++
		default:
			failed++
			r.t.Logf("job %s failed after %d attempts: %+v", j.id, job.Attempts, job.Error)
		}
	}
	return worked, failed, unfinished
}
