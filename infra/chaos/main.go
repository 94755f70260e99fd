// Command chaos is `make chaos`: several publishers publish through several
// gateway-ws replicas, and every subscriber acks what it is delivered, while
// the participant host (the functions) and the gateways are killed with
// SIGKILL at random and restarted, and gateways also crash at the two-phase
// commit's fault points. Some kills take the stack's own Redis (AOF, as
// tidings runs it) down together with every gateway, and some of those
// bring Redis back empty, its transaction records lost. Beside those,
// persist and counter each have a PostgreSQL server of their own, each
// killed alone on a schedule of its own (SIGKILL of all its processes) and
// started again on the same data directory. Then it lets recovery finish and checks what
// must hold: every user's unread count (counter database) equals the
// committed notifications delivered to them minus their acks (persist
// database), nothing is left prepared or pending at a participant, no ack
// waits to be relayed, no transaction record is unfinished, and every
// publish that was answered ok is committed. It prints a table of the
// counts, and exits 1 if anything does not hold.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"tidings/gateway-ws/coordinator"
	"tidings/infra/proc"
	"tidings/infra/stackrun"
	"tidings/lib/config"
	"tidings/lib/store"
)

func main() {
	// The environment is read once, here: only whether to keep the
	// stack's files (STACK_KEEP).
	r := &run{settings: stackrun.Settings{}}
	if err := config.Parse(&r.settings); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	flag.IntVar(&r.publishers, "publishers", 3, "concurrent publishers, each the owner of a topic")
	flag.IntVar(&r.subscribers, "subscribers", 3, "subscribers of every topic")
	flag.DurationVar(&r.duration, "duration", 8*time.Second, "how long the publishers publish under chaos")
	gateways := flag.Int("gateways", 2, "gateway-ws replicas")
	flag.DurationVar(&r.killEvery, "kill-every", 400*time.Millisecond, "mean time between kills")
	crashRate := flag.Float64("crash-rate", 0.05, "chance a gateway crashes at each 2PC fault point")
	flag.Float64Var(&r.redisShare, "redis-share", 0.2, "share of the kills that take Redis down together with every gateway")
	flag.Float64Var(&r.redisWipe, "redis-wipe", 0.5, "chance Redis comes back empty after such a kill")
	flag.DurationVar(&r.databaseKillEvery, "database-kill-every", 4*time.Second, "mean time between kills of each participant's PostgreSQL (each has a killer of its own, beside the other kills)")
	limit := flag.Duration("timeout", 4*time.Minute, "bound on the whole run")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *limit)
	defer cancel()
	err := r.run(ctx, *gateways, *crashRate)
	if r.tx != nil {
		_ = r.tx.Close()
	}
	if r.stack != nil {
		r.stack.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

type run struct {
	settings                stackrun.Settings
	publishers, subscribers int
	duration, killEvery     time.Duration
	redisShare, redisWipe   float64
	databaseKillEvery       time.Duration

	stack            *stackrun.Stack
	redis            *stackrun.RedisServer
	tx               *coordinator.Coordinator // reads the gateways' transactions through the coordinator's API; publishes nothing
	redisKills       int
	redisWipes       int
	persist, counter *stackrun.ParticipantDB
	host             *stackrun.Node
	gateways         []*stackrun.Node
	topics           []topic
	subscriberTokens []string

	ok, pending, failed             atomic.Int64 // publishes: committed, decided but pending, failed
	acksOK, acksPending, acksFailed atomic.Int64
	answered                        sync.Map // notification id -> whether it was answered pending
}

type topic struct {
	id    int64
	token string // its owner's
}

func (r *run) run(ctx context.Context, gateways int, crashRate float64) error {
	var err error
	fmt.Println("building and starting the stack")
	if r.stack, err = stackrun.New(ctx, "chaos", r.settings); err != nil {
		return err
	}
	if r.redis, err = r.stack.OwnRedis(ctx); err != nil {
		return err
	}
	if r.persist, r.counter, err = r.stack.OwnParticipantDatabases(ctx, stackrun.Placement{}); err != nil {
		return err
	}
	r.tx = coordinator.New(coordinator.Config{Redis: r.stack.Redis, Prefix: r.stack.Prefix})
	if r.host, err = r.stack.StartHost(ctx); err != nil {
		return err
	}
	for i := 0; i < gateways; i++ {
		g, err := r.stack.StartGateway(ctx, r.host,
			"RECOVERY_INTERVAL=300ms", "RECOVERY_STUCK_AFTER=1500ms", "PHASE_TWO_TIMEOUT=2s", "ACK_RELAY_INTERVAL=300ms",
			"FUNCTION_TIMEOUT=2s", "BREAKER_OPEN_FOR=300ms", "HEALTH_INTERVAL=0",
			"COORDINATOR_CRASH_RATE="+strconv.FormatFloat(crashRate, 'f', -1, 64))
		if err != nil {
			return err
		}
		r.gateways = append(r.gateways, g)
	}
	if err := r.world(ctx); err != nil {
		return err
	}
	return r.chaos(ctx)
}

// world registers the publishers (each owning a topic) and the
// subscribers, who subscribe to every topic.
func (r *run) world(ctx context.Context) error {
	register := func(email string) (string, error) {
		var out struct{ Token string }
		err := r.call(ctx, "register", "", map[string]string{"email": email, "password": "chaos-password", "name": "chaos"}, &out)
		return out.Token, err
	}
	for i := 0; i < r.subscribers; i++ {
		tok, err := register(fmt.Sprintf("sub%d@chaos.test", i))
		if err != nil {
			return err
		}
		r.subscriberTokens = append(r.subscriberTokens, tok)
	}
	for i := 0; i < r.publishers; i++ {
		owner, err := register(fmt.Sprintf("pub%d@chaos.test", i))
		if err != nil {
			return err
		}
		var created struct {
			Topic struct{ ID int64 }
		}
		if err := r.call(ctx, "create-topic", owner, map[string]string{"name": fmt.Sprintf("topic %d", i)}, &created); err != nil {
			return err
		}
		for _, tok := range r.subscriberTokens {
			if err := r.call(ctx, "subscribe", tok, map[string]int64{"topic_id": created.Topic.ID}, nil); err != nil {
				return err
			}
		}
		r.topics = append(r.topics, topic{id: created.Topic.ID, token: owner})
	}
	return nil
}

func (r *run) call(ctx context.Context, function, token string, body, out any) error {
	return stackrun.Post(ctx, "http://"+r.host.Addr+"/function/"+function, token, body, out)
}

func (r *run) chaos(ctx context.Context) error {
	fmt.Printf("publishing and acking for %v from %d publishers and %d subscribers through %d gateways, killing every ~%v\n",
		r.duration, r.publishers, r.subscribers, len(r.gateways), r.killEvery)
	done := make(chan struct{})
	var wg sync.WaitGroup
	until := time.Now().Add(r.duration)
	for _, t := range r.topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.publish(ctx, t, until)
		}()
	}
	for _, tok := range r.subscriberTokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.ack(ctx, tok, until)
		}()
	}
	go func() { wg.Wait(); close(done) }()
	var killers sync.WaitGroup
	for _, db := range []*stackrun.ParticipantDB{r.persist, r.counter} {
		killers.Add(1)
		go func() {
			defer killers.Done()
			r.killDatabase(ctx, db, done)
		}()
	}
	r.kill(ctx, done)
	killers.Wait()

	fmt.Println("publishers and subscribers done; letting recovery finish")
	for _, db := range []*stackrun.ParticipantDB{r.persist, r.counter} {
		if err := db.Start(ctx); err != nil { // a no-op unless the last restart failed
			return err
		}
	}
	// Records lost with Redis are recovered from the participants once
	// older than RECOVERY_STUCK_AFTER + PHASE_TWO_TIMEOUT. Recovery goes
	// through the fault points too, so a gateway may still crash on
	// purpose now, even while starting: it is restarted, as a supervisor
	// would, until everything is settled.
	err := proc.WaitFor(ctx, 90*time.Second, func(ctx context.Context) error {
		if err := r.restartDead(ctx); err != nil {
			return err
		}
		open, err := r.tx.OpenTransactions(ctx)
		if err == nil && open > 0 {
			err = fmt.Errorf("%d transaction records still unfinished", open)
		}
		if err == nil {
			err = store.CheckInvariant(ctx, r.persist.Pool, r.counter.Pool)
		}
		return err
	})
	if err != nil {
		fmt.Println("recovery did not finish:", err)
	}
	return r.verify(ctx)
}

// publish publishes on t through random gateways until the time is up.
// Like a client behind a load balancer, it moves to another gateway when
// one refuses the connection (the publish certainly was not sent); any
// other failure counts, since the publish may or may not have happened.
func (r *run) publish(ctx context.Context, t topic, until time.Time) {
	for i := 0; time.Now().Before(until) && ctx.Err() == nil; {
		var out struct {
			NotificationID int64 `json:"notification_id"`
			Pending        bool  `json:"pending"`
		}
		err := r.viaGateway(ctx, func(g *stackrun.Node) error {
			return stackrun.Post(ctx, fmt.Sprintf("http://%s/api/topics/%d/notifications", g.Addr, t.id), t.token,
				map[string]string{"title": fmt.Sprintf("chaos %d", i), "body": "payload"}, &out)
		})
		i++
		switch {
		case err != nil || out.NotificationID == 0:
			r.failed.Add(1)
			time.Sleep(50 * time.Millisecond)
			continue
		case out.Pending: // decided: recovery commits it
			r.pending.Add(1)
		default:
			r.ok.Add(1)
		}
		r.answered.Store(out.NotificationID, out.Pending)
	}
}

// ack is a subscriber reading its notifications and acking each unread
// one, through random gateways, until the time is up: a steady stream of
// acks beside the publishes. An ack answered pending (recorded, the
// counter's update left to the relay) is not sent again; a failed one is,
// in a later round, if the list still shows it unread.
func (r *run) ack(ctx context.Context, token string, until time.Time) {
	for time.Now().Before(until) && ctx.Err() == nil {
		var list struct {
			Notifications []struct {
				ID      int64      `json:"id"`
				AckedAt *time.Time `json:"acked_at"`
			} `json:"notifications"`
		}
		err := r.viaGateway(ctx, func(g *stackrun.Node) error {
			return stackrun.Get(ctx, "http://"+g.Addr+"/function/list-notifications?limit=20", token, &list)
		})
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for _, n := range list.Notifications {
			if n.AckedAt != nil || !time.Now().Before(until) {
				continue
			}
			var out struct {
				Pending bool `json:"pending"`
			}
			err := r.viaGateway(ctx, func(g *stackrun.Node) error {
				return stackrun.Post(ctx, "http://"+g.Addr+"/function/ack-notification", token, map[string]int64{"notification_id": n.ID}, &out)
			})
			switch {
			case err != nil:
				r.acksFailed.Add(1)
				time.Sleep(50 * time.Millisecond)
			case out.Pending:
				r.acksPending.Add(1)
			default:
				r.acksOK.Add(1)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// viaGateway calls send on random gateways until one takes the connection
// (a refused one certainly received nothing), or ctx ends.
func (r *run) viaGateway(ctx context.Context, send func(*stackrun.Node) error) error {
	for {
		err := send(r.gateways[mathrand.IntN(len(r.gateways))])
		var op *net.OpError
		if !errors.As(err, &op) || op.Op != "dial" || ctx.Err() != nil {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill kills a random process every ~killEvery until done, and restarts
// whatever is dead (killed, or crashed at a fault point) 50-300ms later.
func (r *run) kill(ctx context.Context, done <-chan struct{}) {
	nodes := append([]*stackrun.Node{r.host}, r.gateways...)
	nextKill := time.After(r.killEvery / 2)
	restart := time.NewTicker(50 * time.Millisecond)
	defer restart.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-nextKill:
			if mathrand.Float64() < r.redisShare {
				r.killRedisAndGateways(ctx)
			} else {
				nodes[mathrand.IntN(len(nodes))].Kill()
			}
			time.Sleep(restartPause())
			nextKill = time.After(around(r.killEvery))
		case <-restart.C:
		}
		// A gateway may crash on purpose at a fault point before its
		// first health check; the next tick restarts it again.
		if err := r.restartDead(ctx); err != nil && !errors.Is(err, proc.ErrExited) {
			fmt.Fprintln(os.Stderr, err)
		}
	}
}

// killRedisAndGateways kills Redis and every gateway at once (SIGKILL),
// sometimes wiping Redis's files, and starts Redis again 50-300ms later;
// the gateways are restarted with the other dead nodes.
func (r *run) killRedisAndGateways(ctx context.Context) {
	wipe := mathrand.Float64() < r.redisWipe
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.redis.Kill(wipe) }()
	for _, g := range r.gateways {
		wg.Add(1)
		go func() { defer wg.Done(); g.Kill() }()
	}
	wg.Wait()
	r.redisKills++
	if wipe {
		r.redisWipes++
	}
	time.Sleep(restartPause())
	if err := r.redis.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "restart redis:", err)
	}
}

// killDatabase kills one participant's PostgreSQL alone (SIGKILL of all
// its processes) every ~databaseKillEvery until done, whatever else is
// being killed, and starts it again on the same data directory 50-300ms
// after each kill.
func (r *run) killDatabase(ctx context.Context, db *stackrun.ParticipantDB, done <-chan struct{}) {
	for wait := time.NewTimer(around(r.databaseKillEvery)); ; wait.Reset(around(r.databaseKillEvery)) {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-wait.C:
		}
		if err := db.Kill(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		time.Sleep(restartPause())
		if err := db.Start(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "restart the", db.Schema.Name, "database:", err)
		}
	}
}

// around is d give or take half of it, at random, so that kills fall at
// every phase of a transaction.
func around(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.5 + mathrand.Float64()))
}

// restartPause is how long a killed server stays down: 50-300ms.
func restartPause() time.Duration { return time.Duration(50+mathrand.IntN(250)) * time.Millisecond }

func (r *run) restartDead(ctx context.Context) error {
	for _, n := range append([]*stackrun.Node{r.host}, r.gateways...) {
		if n.Exited() {
			if err := n.Start(ctx); err != nil {
				return fmt.Errorf("restart %s: %w", n.Name, err)
			}
		}
	}
	return nil
}

// verify checks the invariant and prints the counts.
func (r *run) verify(ctx context.Context) error {
	var problems []error
	if err := store.CheckInvariant(ctx, r.persist.Pool, r.counter.Pool); err != nil {
		problems = append(problems, err)
	}
	if open, err := r.tx.OpenTransactions(ctx); err != nil || open > 0 {
		problems = append(problems, fmt.Errorf("%d transaction records unfinished (%v)", open, err))
	}
	var ok, pending []int64
	r.answered.Range(func(id, p any) bool {
		if p.(bool) {
			pending = append(pending, id.(int64))
		} else {
			ok = append(ok, id.(int64))
		}
		return true
	})
	var committedOK, committedPending, committed int64
	if err := r.persist.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE id = ANY($1)), count(*) FILTER (WHERE id = ANY($2)), count(*)
		FROM notifications WHERE state = 'committed'`, ok, pending).Scan(&committedOK, &committedPending, &committed); err != nil {
		return err
	}
	if committedOK != int64(len(ok)) {
		problems = append(problems, fmt.Errorf("%d publishes were answered ok but only %d of them are committed", len(ok), committedOK))
	}
	// A pending publish was decided, but no participant may have committed
	// it yet: if Redis then comes back empty, its decision is lost with its
	// record and recovery, asking the participants, rolls it back.
	lostPending := int64(len(pending)) - committedPending
	if lostPending > 0 && r.redisWipes == 0 {
		problems = append(problems, fmt.Errorf("%d publishes were answered pending but only %d of them are committed, and Redis never lost a record", len(pending), committedPending))
	}
	stats, err := r.tx.Stats(ctx)
	if err != nil {
		return err
	}
	gatewayKills := 0
	for _, g := range r.gateways {
		gatewayKills += g.Kills()
	}
	holds := "yes"
	if len(problems) > 0 {
		holds = "no"
	}
	fmt.Println()
	fmt.Println("| what | count |")
	fmt.Println("| --- | ---: |")
	for _, row := range []struct {
		what  string
		count any
	}{
		{"publishes answered ok (committed)", r.ok.Load()},
		{"publishes answered ok, pending (decided, finished by recovery)", r.pending.Load()},
		{"... of which rolled back (decision lost with Redis's data)", lostPending},
		{"publishes failed", r.failed.Load()},
		{"transactions published", stats.Published},
		{"transactions committed", stats.Committed},
		{"transactions aborted", stats.Aborted},
		{"transactions recovered", stats.Recovered},
		{"committed notifications (persist database)", committed},
		{"acks ok", r.acksOK.Load()},
		{"acks pending (counter update relayed later)", r.acksPending.Load()},
		{"acks failed", r.acksFailed.Load()},
		{"kills: function host", r.host.Kills()},
		{"kills: gateway (alone)", gatewayKills - r.redisKills*len(r.gateways)},
		{"kills: Redis with every gateway", r.redisKills},
		{"... of which Redis came back empty", r.redisWipes},
		{"kills: persist PostgreSQL", r.persist.Kills()},
		{"kills: counter PostgreSQL", r.counter.Kills()},
		{"invariant holds", holds},
	} {
		fmt.Printf("| %s | %v |\n", row.what, row.count)
	}
	if r.redisWipes > 0 {
		fmt.Println("\n(the transaction counts are kept in Redis: they start again from zero each time Redis comes back empty)")
	}
	for _, p := range problems {
		fmt.Println("FAIL:", p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("the invariant does not hold")
	}
	fmt.Println("\ninvariant holds: unread (counter database) = committed deliveries - acks (persist database) for every user; nothing prepared or pending at any participant; no ack left to relay; no unfinished transaction")
	return nil
}
