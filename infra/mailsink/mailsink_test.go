package mailsink_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/smtp"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"tidings/infra/mailsink"
)

const message = "From: Tidings <noreply@tidings.test>\r\n" +
	"To: ann@example.test\r\n" +
	"Subject: =?UTF-8?q?Gr=C3=BC=C3=9Fe?=\r\n" +
	"Message-ID: <abc@tidings.test>\r\n" +
	"Content-Type: text/plain; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Hello =C3=A9t=C3=A9\r\n"

func start(t *testing.T, opts mailsink.Options) *mailsink.Sink {
	t.Helper()
	s, err := mailsink.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSinkKeepsAMailAndListsItOverHTTP(t *testing.T) {
	s := start(t, mailsink.Options{})
	if err := smtp.SendMail(s.Addr(), nil, "noreply@tidings.test", []string{"ann@example.test", "bob@example.test"}, []byte(message)); err != nil {
		t.Fatalf("send: %v", err)
	}
	mails := s.Mails()
	if len(mails) != 1 {
		t.Fatalf("sink kept %d mails, want 1", len(mails))
	}
	m := mails[0]
	if m.EnvFrom != "noreply@tidings.test" || strings.Join(m.EnvTo, ",") != "ann@example.test,bob@example.test" {
		t.Errorf("envelope from %q to %v", m.EnvFrom, m.EnvTo)
	}
	if m.Subject != "Grüße" || m.MessageID != "<abc@tidings.test>" || m.To != "ann@example.test" || m.Text != "Hello été\n" {
		t.Errorf("parsed mail %+v", m)
	}

	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	var listed struct{ Mails []mailsink.Mail }
	if err := json.Unmarshal(w.Body.Bytes(), &listed); err != nil || len(listed.Mails) != 1 || listed.Mails[0].Subject != "Grüße" {
		t.Fatalf("listing %d %s (%v)", w.Code, w.Body, err)
	}
	w = httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodDelete, "/", nil))
	if w.Code != http.StatusNoContent || len(s.Mails()) != 0 {
		t.Errorf("DELETE answered %d and left %d mails", w.Code, len(s.Mails()))
	}
}

func TestSinkWithUsersRequiresTheirCredentials(t *testing.T) {
	s := start(t, mailsink.Options{Users: map[string]string{"tidings": "s3cret"}})
	send := func(auth smtp.Auth) error {
		return smtp.SendMail(s.Addr(), auth, "noreply@tidings.test", []string{"ann@example.test"}, []byte(message))
	}
	if err := send(nil); err == nil {
		t.Error("a mail without AUTH was accepted")
	}
	if err := send(smtp.PlainAuth("", "tidings", "wrong", "127.0.0.1")); err == nil {
		t.Error("a wrong password was accepted")
	}
	if err := send(smtp.PlainAuth("", "tidings", "s3cret", "127.0.0.1")); err != nil {
		t.Fatalf("the right credentials were refused: %v", err)
	}
	if got := s.Mails(); len(got) != 1 || got[0].AuthUser != "tidings" {
		t.Fatalf("mails %+v, want one from user tidings", got)
	}
}

func TestSinkAcceptHookRefusesAMailWithItsCode(t *testing.T) {
	s := start(t, mailsink.Options{Accept: func(m mailsink.Mail) error {
		return &gosmtp.SMTPError{Code: 451, Message: "try later"}
	}})
	err := smtp.SendMail(s.Addr(), nil, "noreply@tidings.test", []string{"ann@example.test"}, []byte(message))
	if err == nil || !strings.Contains(err.Error(), "451") {
		t.Fatalf("send: %v, want a 451 refusal", err)
	}
	if n := len(s.Mails()); n != 0 {
		t.Errorf("a refused mail was kept (%d mails)", n)
	}
}
