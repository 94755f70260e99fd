package jobs_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"tidings/functions"
	sendmail "tidings/functions/send-mail"
	"tidings/gateway-ws/invoke"
	"tidings/gateway-ws/jobs"
	"tidings/infra/fnhost"
	"tidings/infra/mailsink"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/testenv"
)

// mailWorld is send-mail built by functions.New (behind the internal key) on a
// test database, sending to a mail sink over loopback SMTP, and an Invoker
// calling it.
type mailWorld struct {
	sink    *mailsink.Sink
	invoker *invoke.Invoker
	redis   *testenv.Redis
}

func newMailWorld(t *testing.T, accept func(mailsink.Mail) error) *mailWorld {
	t.Helper()
	sink, err := mailsink.Start(mailsink.Options{Accept: accept})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	db := testenv.NewDB(t)
	mail := sendmail.DefaultConfig()
	mail.Host, mail.Port, mail.From = sink.Host(), sink.Port(), "tidings <noreply@tidings.test>"
	h, err := functions.New("send-mail", &functions.Deps{Config: config.Config{InternalKey: internalKey, SecretsDir: t.TempDir()}, DBs: db.DBs(), Mail: mail})
	if err != nil {
		t.Fatal(err)
	}
	fns := map[string]fnhost.Function{"send-mail": {Handler: h, Limits: fn.Limits{Timeout: 20 * time.Second, MaxInflight: 20}}}
	return &mailWorld{sink: sink, invoker: host(t, fns), redis: testenv.NewRedis(t)}
}

func (w *mailWorld) queue(t *testing.T, consumer string, caller jobs.Caller, ev *events) *jobs.Queue {
	t.Helper()
	cfg := testConfig(w.redis.Prefix, ev)
	cfg.Consumer = consumer
	cfg.ClaimIdle, cfg.Timeout = 1500*time.Millisecond, time.Second
	q, err := jobs.New(w.redis.Client, caller, tokens(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func mailPayload(key string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"idempotency_key": key, "to": "bob@example.test", "subject": "Hello", "text": "once"})
	return b
}

// waitJob polls the queue until the job has status want.
func waitJob(t *testing.T, q *jobs.Queue, id string, want jobs.Status) *jobs.Job {
	t.Helper()
	var job *jobs.Job
	testenv.Eventually(t, "job "+id+" to become "+string(want), 400, func() bool {
		var err error
		job, err = q.Get(context.Background(), id)
		return err == nil && job.Status == want
	})
	return job
}

func pendingEntries(t *testing.T, w *mailWorld, q *jobs.Queue) int64 {
	t.Helper()
	p, err := w.redis.Client.XPending(context.Background(), q.StreamKey("send-mail"), "workers").Result()
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

// Fault: worker A is killed (its Run context cancelled) while its
// send-mail call is in flight: the SMTP server has the mail's data and
// holds its answer until A is dead. Afterwards: A left the stream entry
// unacknowledged; worker B, another consumer, reclaims it after ClaimIdle
// and retries; send-mail finds the key already sent (or still in
// progress, then sent); the job ends worked and the SMTP server received
// exactly one copy.
func TestMailJobWhoseWorkerIsKilledMidSendIsReclaimedAndSentOnce(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w := newMailWorld(t, func(mailsink.Mail) error {
		once.Do(func() {
			close(held)
			<-release
		})
		return nil
	})
	ev := &events{}
	a := w.queue(t, "worker-a", w.invoker, ev)
	stopA := run(t, a)
	id, err := a.Enqueue(context.Background(), 5, "send-mail", mailPayload("notification-1:user-5"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the mail never reached the SMTP server")
	}
	stopA() // the fault: A dies with the SMTP transaction open
	if n := pendingEntries(t, w, a); n != 1 {
		t.Fatalf("after A died %d entries are pending in the group, want A's one", n)
	}
	close(release) // the server accepts the mail A's call started

	b := w.queue(t, "worker-b", w.invoker, ev)
	run(t, b)
	job := waitJob(t, b, id, jobs.Worked)
	if job.Attempts < 2 {
		t.Errorf("worked after %d attempts, want A's and B's", job.Attempts)
	}
	var result struct{ Sent, Duplicate bool }
	_ = json.Unmarshal(job.Result, &result)
	if result.Sent || !result.Duplicate {
		t.Errorf("B's attempt answered %s, want {sent:false, duplicate:true}", job.Result)
	}
	if got := statuses(ev.of(id)); !slices.Contains(got, jobs.Pending) {
		t.Errorf("events %v: the reclaim should have scheduled a retry (pending)", got)
	}
	if n := len(w.sink.Mails()); n != 1 {
		t.Fatalf("the SMTP server received %d copies, want exactly 1", n)
	}
}

// afterCall cancels a worker's Run once a call has returned, before the
// worker can record it.
type afterCall struct {
	next jobs.Caller
	kill func()
}

func (c *afterCall) Do(ctx context.Context, name, method, query string, body []byte) (*invoke.Answer, error) {
	answer, err := c.next.Do(ctx, name, method, query, body)
	c.kill()
	return answer, err
}

// Fault: worker A's Run is cancelled right after send-mail answered that
// it sent the mail, before A wrote the status or acknowledged the entry.
// Afterwards: B reclaims the job, send-mail answers duplicate, the job is
// worked, and the SMTP server has exactly one copy.
func TestMailJobWhoseWorkerDiesBeforeTheAckIsNotSentTwice(t *testing.T) {
	w := newMailWorld(t, nil)
	ev := &events{}
	ctxA, killA := context.WithCancel(context.Background())
	defer killA()
	a := w.queue(t, "worker-a", &afterCall{next: w.invoker, kill: killA}, ev)
	doneA := make(chan error, 1)
	go func() { doneA <- a.Run(ctxA) }()
	id, err := a.Enqueue(context.Background(), 5, "send-mail", mailPayload("notification-2:user-5"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-doneA:
	case <-time.After(20 * time.Second):
		t.Fatal("worker A was never killed")
	}
	if job, _ := a.Get(context.Background(), id); job == nil || job.Status != jobs.Working {
		t.Fatalf("after A died the job is %+v, want still working (no outcome recorded)", job)
	}
	if n := len(w.sink.Mails()); n != 1 {
		t.Fatalf("A's call sent %d mails, want 1", n)
	}

	b := w.queue(t, "worker-b", w.invoker, ev)
	run(t, b)
	job := waitJob(t, b, id, jobs.Worked)
	var result struct{ Sent, Duplicate bool }
	_ = json.Unmarshal(job.Result, &result)
	if !result.Duplicate {
		t.Errorf("B's attempt answered %s, want duplicate", job.Result)
	}
	if n := len(w.sink.Mails()); n != 1 {
		t.Fatalf("the SMTP server received %d copies, want exactly 1", n)
	}
}
