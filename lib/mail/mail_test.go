package mail_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"tidings/lib/mail"
)

func TestRequestEncodesAsSendMailReadsIt(t *testing.T) {
	b, _ := json.Marshal(mail.Request{IdempotencyKey: "k", To: "a@example.com", Subject: "s", Text: "t"})
	if want := `{"idempotency_key":"k","to":"a@example.com","subject":"s","text":"t"}`; string(b) != want {
		t.Errorf("request encodes as %s, want %s", b, want)
	}
}

func TestRequestCheckRefusesWhatSendMailCannotSend(t *testing.T) {
	good := mail.Request{IdempotencyKey: "tx-1-7", To: "a@example.com", Subject: "[news] hi", Text: "body"}
	if err := good.Check(); err != nil {
		t.Fatalf("Check of a good request: %v", err)
	}
	for name, change := range map[string]func(*mail.Request){
		"no key":             func(r *mail.Request) { r.IdempotencyKey = "" },
		"key with a space":   func(r *mail.Request) { r.IdempotencyKey = "a b" },
		"key too long":       func(r *mail.Request) { r.IdempotencyKey = strings.Repeat("k", mail.MaxKeyBytes+1) },
		"display name":       func(r *mail.Request) { r.To = "A <a@example.com>" },
		"two recipients":     func(r *mail.Request) { r.To = "a@example.com,b@example.com" },
		"empty subject":      func(r *mail.Request) { r.Subject = "" },
		"subject with CR LF": func(r *mail.Request) { r.Subject = "hi\r\nBcc: x@example.com" },
		"subject too long":   func(r *mail.Request) { r.Subject = strings.Repeat("s", mail.MaxSubjectRunes+1) },
		"text too long":      func(r *mail.Request) { r.Text = strings.Repeat("t", mail.MaxTextBytes+1) },
		"text not UTF-8":     func(r *mail.Request) { r.Text = "\xff" },
	} {
		r := good
		change(&r)
		if err := r.Check(); err == nil {
			t.Errorf("%s: Check passed %+v", name, r)
		}
	}
}

func TestSubjectIsCutToWhatCheckTakes(t *testing.T) {
	long := strings.Repeat("é", mail.MaxSubjectRunes+5)
	s := mail.Subject(long)
	if n := utf8.RuneCountInString(s); n != mail.MaxSubjectRunes {
		t.Errorf("Subject kept %d characters, want %d", n, mail.MaxSubjectRunes)
	}
	r := mail.Request{IdempotencyKey: "k", To: "a@example.com", Subject: s}
	if err := r.Check(); err != nil {
		t.Errorf("a cut subject is refused: %v", err)
	}
	if mail.Subject("short") != "short" {
		t.Error("a short subject was changed")
	}
}
