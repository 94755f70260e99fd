package sendmail_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"tidings/functions"
	sendmail "tidings/functions/send-mail"
	"tidings/infra/mailsink"
	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/fn"
	libmail "tidings/lib/mail"
	"tidings/lib/testenv"
)

// fixture is send-mail on a test database, sending to a mail sink over
// loopback SMTP.
type fixture struct {
	db   *testenv.DB
	sink *mailsink.Sink
	cfg  sendmail.Config
}

func newFixture(t *testing.T, opts mailsink.Options) *fixture {
	t.Helper()
	sink, err := mailsink.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	cfg := sendmail.DefaultConfig()
	cfg.Host, cfg.Port, cfg.From = sink.Host(), sink.Port(), "Tidings <noreply@tidings.test>"
	cfg.Timeout, cfg.ClaimLease = 5*time.Second, 10*time.Second
	return &fixture{db: testenv.NewDB(t), sink: sink, cfg: cfg}
}

func (f *fixture) send(t *testing.T, body string) (int, map[string]any) {
	t.Helper()
	h, err := sendmail.New(f.db.Pool, f.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	status, raw := testenv.Call(t, h, http.MethodPost, body, "")
	var out map[string]any
	testenv.Decode(t, raw, &out)
	return status, out
}

func mailBody(key, to, subject, text string) string {
	b, _ := json.Marshal(libmail.Request{IdempotencyKey: key, To: to, Subject: subject, Text: text})
	return string(b)
}

func TestSendMailDeliversHeadersRecipientsAndBody(t *testing.T) {
	f := newFixture(t, mailsink.Options{Users: map[string]string{"tidings": "smtp-pass"}})
	f.cfg.User, f.cfg.Password = "tidings", "smtp-pass"
	text := "Ann published \"Release 2\".\nRead it at http://localhost:4000/\n"
	status, out := f.send(t, mailBody("notification-7:user-3", "bob@example.test", "Neu: Grüße von Ann", text))
	if status != 200 || out["sent"] != true || out["duplicate"] != false {
		t.Fatalf("send answered %d %v, want 200 sent", status, out)
	}
	mails := f.sink.Mails()
	if len(mails) != 1 {
		t.Fatalf("the SMTP server received %d mails, want 1", len(mails))
	}
	m := mails[0]
	if m.EnvFrom != "noreply@tidings.test" || len(m.EnvTo) != 1 || m.EnvTo[0] != "bob@example.test" {
		t.Errorf("envelope MAIL FROM %q RCPT TO %v, want noreply@tidings.test and [bob@example.test]", m.EnvFrom, m.EnvTo)
	}
	if m.AuthUser != "tidings" {
		t.Errorf("authenticated as %q, want tidings", m.AuthUser)
	}
	from, err := mail.ParseAddress(m.From)
	if err != nil || from.Address != "noreply@tidings.test" || from.Name != "Tidings" {
		t.Errorf("From: header %q (%v), want Tidings <noreply@tidings.test>", m.From, err)
	}
	if to, err := mail.ParseAddress(m.To); err != nil || to.Address != "bob@example.test" {
		t.Errorf("To: header %q (%v), want bob@example.test", m.To, err)
	}
	if m.Subject != "Neu: Grüße von Ann" {
		t.Errorf("Subject: %q", m.Subject)
	}
	wantID := sendmail.MessageID("notification-7:user-3", "tidings.test")
	if m.MessageID != wantID || out["message_id"] != wantID {
		t.Errorf("Message-ID: header %q, answer %v, want %q from the key", m.MessageID, out["message_id"], wantID)
	}
	if m.Header("Date") == "" {
		t.Error("no Date: header")
	}
	if strings.TrimRight(m.Text, "\n") != strings.TrimRight(text, "\n") {
		t.Errorf("body %q, want %q", m.Text, text)
	}
}

func TestSendMailWithARepeatedKeySendsNothingMore(t *testing.T) {
	f := newFixture(t, mailsink.Options{})
	body := mailBody("k-1", "ann@example.test", "Hello", "once")
	if status, out := f.send(t, body); status != 200 || out["sent"] != true {
		t.Fatalf("first send: %d %v", status, out)
	}
	for range 2 {
		if status, out := f.send(t, body); status != 200 || out["sent"] != false || out["duplicate"] != true {
			t.Fatalf("repeat: %d %v, want 200 {sent:false, duplicate:true}", status, out)
		}
	}
	if status, out := f.send(t, mailBody("k-1", "ann@example.test", "Another subject", "once")); status != 409 {
		t.Errorf("the key reused for another mail: %d %v, want 409", status, out)
	}
	if n := len(f.sink.Mails()); n != 1 {
		t.Fatalf("the SMTP server received %d mails, want exactly 1", n)
	}
}

func TestSendMailRefusesBadInputAndChangesNothing(t *testing.T) {
	f := newFixture(t, mailsink.Options{})
	before := testenv.Snapshot(t, f.db.Pool)
	long := strings.Repeat("x", 129)
	for name, body := range map[string]string{
		"malformed JSON":      `{"idempotency_key":`,
		"unknown field":       `{"idempotency_key":"k","to":"a@b.test","subject":"s","text":"t","cc":"x"}`,
		"no key":              mailBody("", "a@b.test", "s", "t"),
		"key too long":        mailBody(long, "a@b.test", "s", "t"),
		"key with a space":    mailBody("a b", "a@b.test", "s", "t"),
		"no recipient":        mailBody("k", "", "s", "t"),
		"display name":        mailBody("k", "Ann <a@b.test>", "s", "t"),
		"two recipients":      mailBody("k", "a@b.test, c@d.test", "s", "t"),
		"header injection":    mailBody("k", "a@b.test\r\nBcc: x@y.test", "s", "t"),
		"not an address":      mailBody("k", "ann", "s", "t"),
		"empty subject":       mailBody("k", "a@b.test", "", "t"),
		"subject too long":    mailBody("k", "a@b.test", strings.Repeat("é", 201), "t"),
		"newline in subject":  mailBody("k", "a@b.test", "hi\r\nBcc: x@y.test", "t"),
		"text too long":       mailBody("k", "a@b.test", "s", strings.Repeat("x", 20001)),
		"text not valid UTF8": `{"idempotency_key":"k","to":"a@b.test","subject":"s","text":"\xff"}`,
	} {
		if status, out := f.send(t, body); status != 400 {
			t.Errorf("%s: %d %v, want 400", name, status, out)
		}
	}
	h, _ := sendmail.New(f.db.Pool, f.cfg, nil)
	if status, _ := testenv.Call(t, h, http.MethodGet, "", ""); status != 405 {
		t.Errorf("GET: %d, want 405", status)
	}
	if after := testenv.Snapshot(t, f.db.Pool); after != before {
		t.Error("refused requests changed the database")
	}
	if n := len(f.sink.Mails()); n != 0 {
		t.Errorf("refused requests sent %d mails", n)
	}
}

func TestSendMailFromTheRegistryNeedsTheInternalKey(t *testing.T) {
	f := newFixture(t, mailsink.Options{})
	mail := sendmail.DefaultConfig()
	mail.Host, mail.Port, mail.From = f.sink.Host(), f.sink.Port(), "noreply@tidings.test"
	deps := &functions.Deps{Config: config.Config{InternalKey: "the-internal-key", SecretsDir: t.TempDir()}, DBs: f.db.DBs(), Mail: mail}
	h, err := functions.New("send-mail", deps)
	if err != nil {
		t.Fatal(err)
	}
	body := mailBody("registry-1", "ann@example.test", "Hi", "text")
	if status, raw := testenv.Call(t, h, http.MethodPost, body, ""); status != 401 || testenv.ErrorCode(raw) != "unauthorized" {
		t.Fatalf("without the internal key: %d %s, want 401 unauthorized", status, raw)
	}
	if n := len(f.sink.Mails()); n != 0 {
		t.Fatalf("a call without the key sent %d mails", n)
	}
	status, raw := callWithKey(t, h, body, "the-internal-key")
	if status != 200 || len(f.sink.Mails()) != 1 {
		t.Fatalf("with the key: %d %s and %d mails, want 200 and 1", status, raw, len(f.sink.Mails()))
	}
}

func TestSendMailRefusedByTheServerReleasesTheKey(t *testing.T) {
	var reply error
	f := newFixture(t, mailsink.Options{Accept: func(mailsink.Mail) error { return reply }})
	body := mailBody("refused-1", "ann@example.test", "Hi", "text")

	reply = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	if status, out := f.send(t, body); status != 422 {
		t.Errorf("permanent refusal (550): %d %v, want 422 (final, not retried)", status, out)
	}
	reply = &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	if status, out := f.send(t, body); status != 502 {
		t.Errorf("temporary refusal (451): %d %v, want 502 (retried)", status, out)
	}
	reply = nil
	if status, out := f.send(t, body); status != 200 || out["sent"] != true {
		t.Fatalf("after the refusals the key must be free to send: %d %v", status, out)
	}
	if n := len(f.sink.Mails()); n != 1 {
		t.Errorf("the sink kept %d mails, want 1", n)
	}
}

func TestSendMailWithMandatoryStartTLSRefusesAPlainServer(t *testing.T) {
	f := newFixture(t, mailsink.Options{})
	f.cfg.StartTLS = "mandatory"
	if status, out := f.send(t, mailBody("tls-1", "ann@example.test", "Hi", "text")); status != 502 {
		t.Errorf("mandatory STARTTLS to a server without it: %d %v, want 502", status, out)
	}
	if n := len(f.sink.Mails()); n != 0 {
		t.Errorf("%d mails went out in the clear", n)
	}
	f.cfg.StartTLS = "none"
	if status, out := f.send(t, mailBody("tls-1", "ann@example.test", "Hi", "text")); status != 200 {
		t.Errorf("after the failure the key must be free: %d %v", status, out)
	}
}

// The crash window, made by hand: the SMTP server took the mail but the
// sender died before marking it, so its claim stays 'sending' (the test
// sends, then turns the row back into that state). While the claim is
// fresh a retry is told to come back later (503, which the job queue
// retries); once it is older than the lease the retry sends again with the
// same Message-ID: the documented at-least-once choice.
func TestSendMailAfterACrashBeforeTheMarkSendsAgainWithTheSameMessageID(t *testing.T) {
	f := newFixture(t, mailsink.Options{})
	body := mailBody("crashed-1", "ann@example.test", "Hi", "text")
	if status, out := f.send(t, body); status != 200 {
		t.Fatalf("first send: %d %v", status, out)
	}
	setClaim := func(age string) {
		_, err := f.db.Pool.Exec(context.Background(), `
			UPDATE sent_mails SET state = 'sending', sent_at = NULL, claimed_at = now() - $2::interval
			WHERE idempotency_key = $1`, "crashed-1", age)
		if err != nil {
			t.Fatal(err)
		}
	}
	setClaim("0s")
	if status, out := f.send(t, body); status != 503 || out["error"].(map[string]any)["code"] != "in_progress" {
		t.Fatalf("retry during a live claim: %d %v, want 503 in_progress", status, out)
	}
	setClaim("1 minute")
	if status, out := f.send(t, body); status != 200 || out["sent"] != true {
		t.Fatalf("retry after the lease: %d %v, want 200 sent", status, out)
	}
	m := f.sink.Mails()
	want := sendmail.MessageID("crashed-1", "tidings.test")
	if len(m) != 2 || m[0].MessageID != want || m[1].MessageID != want {
		t.Fatalf("mails %+v, want two copies, both with Message-ID %s", m, want)
	}
}

func callWithKey(t *testing.T, h fn.Handler, body, key string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.Header.Set(auth.InternalKeyHeader, key)
	w := httptest.NewRecorder()
	(&fn.Adapter{Handler: h}).ServeHTTP(w, r)
	return w.Code, w.Body.String()
}
