package coordinator

import (
	"context"
	"io"
	"testing"
	"time"

	sendmail "tidings/functions/send-mail"
	"tidings/gateway-ws/jobs"
	"tidings/infra/mailsink"
	"tidings/lib/auth"
	"tidings/lib/logging"
	"tidings/lib/notification"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

// TestPublishWithEmailMailsEachOptedInSubscriber runs the whole path with
// real parts: the coordinator queues send-mail jobs on the real job queue,
// whose workers call the real send-mail function, which speaks SMTP to a
// real server.
func TestPublishWithEmailMailsEachOptedInSubscriber(t *testing.T) {
	h, sink := newMailHarness(t)
	owner, topic, subs := h.world()
	ctx := context.Background()
	if err := store.Subscribe(ctx, h.dbs.Directory.Pool, topic, subs[0], true); err != nil { // s1 wants mail
		t.Fatal(err)
	}

	if _, err := h.coord.Publish(ctx, owner, topic, notification.Message{Title: "v1.0", Body: "out now"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.coord.Publish(ctx, owner, topic, notification.Message{Title: "v1.1", Body: "fixes", Email: true}); err != nil {
		t.Fatal(err)
	}
	var mails []mailsink.Mail
	for i := 0; i < 200 && len(mails) == 0; i++ { // bounded: the worker is asynchronous
		time.Sleep(25 * time.Millisecond)
		mails = sink.Mails()
	}
	if len(mails) != 1 {
		t.Fatalf("%d mails, want one: to the one subscriber with email on, for the one publish with email", len(mails))
	}
	m := mails[0]
	if m.EnvTo[0] != "s1@example.com" || m.Subject != "[releases] v1.1" || m.Text == "" {
		t.Errorf("mail to %v, subject %q, text %q", m.EnvTo, m.Subject, m.Text)
	}
	h.settled()
}

// newMailHarness is a harness whose coordinator queues mails on the real
// job queue, whose workers call the real send-mail, which speaks SMTP to
// the sink returned.
func newMailHarness(t *testing.T) (*harness, *mailsink.Sink) {
	sink, err := mailsink.Start(mailsink.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	mail := sendmail.DefaultConfig() // send-mail speaks to the sink
	mail.Host, mail.Port, mail.StartTLS = sink.Host(), sink.Port(), "none"
	h := newHarnessMail(t, testenv.NewRedis(t), nil, nil, mail)
	cfg := jobs.DefaultConfig()
	cfg.Prefix, cfg.Log = h.rd.Prefix+"jobs:", logging.NewTo(io.Discard, "error", "test")
	q, err := jobs.New(h.rd.Client, h.inv, auth.NewTokens(testenv.JWTKey, time.Hour), cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	go q.Run(runCtx)
	h.coord.cfg.Jobs = q
	return h, sink
}

// A direct notification with email mails every user it names, whatever
// their subscriptions, with its title as the subject.
func TestDirectNotificationWithEmailMailsEveryRecipient(t *testing.T) {
	h, sink := newMailHarness(t)
	_, _, subs := h.world()
	res, err := h.coord.PublishDirect(context.Background(), subs, notification.Message{Title: "your order shipped", Body: "track it", Email: true})
	if err != nil {
		t.Fatal(err)
	}
	var mails []mailsink.Mail
	for i := 0; i < 200 && len(mails) < len(subs); i++ { // bounded: the worker is asynchronous
		time.Sleep(25 * time.Millisecond)
		mails = sink.Mails()
	}
	got := map[string]string{}
	for _, m := range mails {
		got[m.EnvTo[0]] = m.Subject
	}
	want := map[string]string{"s1@example.com": "your order shipped", "s2@example.com": "your order shipped"}
	if len(mails) != 2 || got["s1@example.com"] != want["s1@example.com"] || got["s2@example.com"] != want["s2@example.com"] {
		t.Errorf("mails (to: subject) %v, want %v", got, want)
	}
	h.committedOnce(res.TxID)
}
