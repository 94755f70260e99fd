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
	sink, err := mailsink.Start(mailsink.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	mail := sendmail.DefaultConfig() // send-mail speaks to the sink
	mail.Host, mail.Port, mail.StartTLS = sink.Host(), sink.Port(), "none"
	h := newHarnessMail(t, testenv.NewRedis(t), nil, nil, mail)
	owner, topic, subs := h.world()
	ctx := context.Background()
	if err := store.Subscribe(ctx, h.dbs.Directory.Pool, topic, subs[0], true); err != nil { // s1 wants mail
		t.Fatal(err)
	}

	cfg := jobs.DefaultConfig()
	cfg.Prefix, cfg.Log = h.rd.Prefix+"jobs:", logging.NewTo(io.Discard, "error", "test")
	q, err := jobs.New(h.rd.Client, h.inv, auth.NewTokens(testenv.JWTKey, time.Hour), cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	go q.Run(runCtx)
	h.coord.cfg.Jobs = q

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
