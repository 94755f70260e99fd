// Package mail holds what the send-mail function is asked and answers, so
// the coordinator that queues mails and the function that sends them share
// one type and one set of limits.
package mail

import (
	"net/mail"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"tidings/lib/fn"
)

// Limits of a Request.
const (
	MaxKeyBytes     = 128
	MaxSubjectRunes = 200
	MaxTextBytes    = 20000
	maxAddressBytes = 254
)

// Request is the body of a send-mail call: one plain-text mail.
type Request struct {
	// IdempotencyKey names the mail: a repeat with the same key sends
	// nothing more.
	IdempotencyKey string `json:"idempotency_key"`
	To             string `json:"to"`
	Subject        string `json:"subject"`
	Text           string `json:"text"`
}

// Response is send-mail's answer: Sent is true when this call sent the
// mail, Duplicate when an earlier call with the same key had.
type Response struct {
	Sent      bool   `json:"sent"`
	Duplicate bool   `json:"duplicate"`
	MessageID string `json:"message_id"`
}

var safeKey = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)

// Check refuses, with a 400, a request send-mail cannot send: a key that
// is not 1 to MaxKeyBytes of A-Z a-z 0-9 . _ : -, a recipient that is not
// one plain address, a subject that is not 1 to MaxSubjectRunes characters
// without control characters, a text over MaxTextBytes, or text that is not
// UTF-8.
func (r Request) Check() error {
	switch {
	case r.IdempotencyKey == "" || len(r.IdempotencyKey) > MaxKeyBytes || !safeKey.MatchString(r.IdempotencyKey):
		return fn.BadRequest("idempotency_key must be 1 to %d characters of A-Z a-z 0-9 . _ : -", MaxKeyBytes)
	case !plainAddress(r.To):
		return fn.BadRequest("to must be one plain address (user@example.com), without a display name")
	case r.Subject == "" || utf8.RuneCountInString(r.Subject) > MaxSubjectRunes || !utf8.ValidString(r.Subject) || hasControl(r.Subject):
		return fn.BadRequest("subject must be 1 to %d characters of UTF-8 without control characters", MaxSubjectRunes)
	case len(r.Text) > MaxTextBytes || !utf8.ValidString(r.Text):
		return fn.BadRequest("text must be UTF-8 of at most %d bytes", MaxTextBytes)
	}
	return nil
}

// Subject cuts s to MaxSubjectRunes characters, so a subject built from
// user text (a topic name, a title) is always one send-mail takes.
func Subject(s string) string {
	if r := []rune(s); len(r) > MaxSubjectRunes {
		return string(r[:MaxSubjectRunes])
	}
	return s
}

func plainAddress(s string) bool {
	if s == "" || len(s) > maxAddressBytes || hasControl(s) || strings.ContainsAny(s, "<>\" ,;") {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Name == "" && a.Address == s && strings.Contains(s, "@")
}

func hasControl(s string) bool { return strings.IndexFunc(s, unicode.IsControl) >= 0 }
