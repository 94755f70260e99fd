// Package sendmail is the send-mail function: POST {idempotency_key, to,
// subject, text} (lib/mail.Request) sends one plain-text mail through SMTP
// and answers a lib/mail.Response. It is internal:
// only gateway-ws's job queue calls it, with the internal key.
//
// Idempotency: the key is claimed in PostgreSQL (table sent_mails) before
// the SMTP transaction and marked sent after it, so a retried job never
// sends twice; a repeat of a sent key answers {sent:false, duplicate:true}
// and sends nothing. The Message-ID is derived from the key, so a receiver
// can dedupe too.
//
// Crash window: when the process dies after the server accepted the mail
// but before the mark, the claim stays 'sending'; once it is older than the
// claim lease a retry takes it over and sends again. That makes delivery
// at-least-once (never lost, rarely twice, and then with the same
// Message-ID), which is what a notification mail wants: a lost mail is
// worse than a duplicate the receiver can drop. Everything short of a
// process crash is covered: the caller hanging up does not stop a send in
// flight, and a send the server refused releases the claim.
package sendmail

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/logging"
	"tidings/lib/mail"
	"tidings/lib/store"
)

// dbTimeout bounds each statement on the sent_mails table.
const dbTimeout = 5 * time.Second

// Handler sends mails.
type Handler struct {
	db     store.Querier
	cfg    Config
	domain string
	log    *slog.Logger
}

// New returns a send-mail handler over db sending through cfg's server,
// logging to log (nil: no logs).
func New(db store.Querier, cfg Config, log *slog.Logger) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("send-mail: %w", err)
	}
	domain, _ := cfg.senderDomain()
	return &Handler{db: db, cfg: cfg, domain: domain, log: logging.Or(log).With("function", "send-mail")}, nil
}

// Build is the handler a process serves: cfg (the zero Config means
// DefaultConfig) with its password read from secrets (see
// Config.Password), once per process. A bad configuration is
// logged now and every call answers 503 misconfigured, so jobs retry and
// fail visibly instead of the process refusing to serve its other
// functions.
func Build(db store.Querier, cfg Config, secrets config.Config, log *slog.Logger) fn.Handler {
	if cfg == (Config{}) {
		cfg = DefaultConfig()
	}
	cfg, err := cfg.withPassword(secrets)
	var h *Handler
	if err == nil {
		h, err = New(db, cfg, log)
	}
	if err != nil {
		logging.Or(log).Error("send-mail is misconfigured; every call will fail", "err", err)
		return fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
			return fn.Response{}, fn.Errorf(http.StatusServiceUnavailable, "misconfigured", "send-mail has no usable SMTP configuration")
		})
	}
	return h
}

// Handle implements fn.Handler.
func (h *Handler) Handle(req fn.Request) (fn.Response, error) {
	if err := fn.RequireMethod(req, http.MethodPost); err != nil {
		return fn.Response{}, err
	}
	var in mail.Request
	if err := fn.DecodeJSON(req, &in); err != nil {
		return fn.Response{}, err
	}
	if err := in.Check(); err != nil {
		return fn.Response{}, err
	}
	// Once claimed, the send and its mark run to the end even when the
	// caller hangs up: stopping half-way is what opens the duplicate window.
	ctx := context.WithoutCancel(req.Context())
	msgID := MessageID(in.IdempotencyKey, h.domain)
	token := rand.Text()

	claim, err := h.claim(ctx, in, msgID, token)
	if err != nil {
		return fn.Response{}, err
	}
	switch claim {
	case store.MailAlreadySent:
		return fn.JSON(http.StatusOK, mail.Response{Sent: false, Duplicate: true, MessageID: msgID})
	case store.MailInProgress:
		return fn.Response{}, fn.Errorf(http.StatusServiceUnavailable, "in_progress",
			"a send with this idempotency key is in progress; retry later")
	case store.MailKeyReused:
		return fn.Response{}, fn.Conflict("idempotency key %s was used for a different mail", in.IdempotencyKey)
	}

	if err := h.send(ctx, in, msgID); err != nil {
		h.release(ctx, in.IdempotencyKey, token)
		return fn.Response{}, h.sendError(in.IdempotencyKey, err)
	}
	mctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	if err := store.MarkMailSent(mctx, h.db, in.IdempotencyKey); err != nil {
		// The mail is out; the claim expires and a retry sends it again.
		return fn.Response{}, err
	}
	return fn.JSON(http.StatusOK, mail.Response{Sent: true, MessageID: msgID})
}

func (h *Handler) claim(ctx context.Context, in mail.Request, msgID, token string) (store.MailClaim, error) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	return store.ClaimMail(ctx, h.db, in.IdempotencyKey, digest(in), msgID, token, h.cfg.ClaimLease)
}

func (h *Handler) release(ctx context.Context, key, token string) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	if err := store.ReleaseMail(ctx, h.db, key, token); err != nil {
		// The claim then lapses after its lease; a retry waits until then.
		h.log.Warn("could not release a mail claim after a failed send", "key", key, "err", err)
	}
}

// send runs one SMTP transaction, under cfg.Timeout.
func (h *Handler) send(ctx context.Context, in mail.Request, msgID string) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	m := gomail.NewMsg()
	if err := m.From(h.cfg.From); err != nil {
		return fmt.Errorf("sender %q: %w", h.cfg.From, err)
	}
	if err := m.To(in.To); err != nil {
		return fmt.Errorf("recipient: %w", err)
	}
	m.Subject(in.Subject)
	m.SetMessageIDWithValue(strings.Trim(msgID, "<>"))
	m.SetDate()
	m.SetBodyString(gomail.TypeTextPlain, in.Text)

	policy, _ := h.cfg.tlsPolicy()
	opts := []gomail.Option{gomail.WithPort(h.cfg.Port), gomail.WithTLSPolicy(policy), gomail.WithTimeout(h.cfg.Timeout)}
	if h.cfg.User != "" {
		var mech gomail.SMTPAuthType
		_ = mech.UnmarshalString(h.cfg.Auth) // checked by Validate
		opts = append(opts, gomail.WithSMTPAuth(mech), gomail.WithUsername(h.cfg.User), gomail.WithPassword(h.cfg.Password))
	}
	client, err := gomail.NewClient(h.cfg.Host, opts...)
	if err != nil {
		return fmt.Errorf("smtp client for %s:%d: %w", h.cfg.Host, h.cfg.Port, err)
	}
	if err := client.DialAndSendWithContext(ctx, m); err != nil {
		return fmt.Errorf("send through %s:%d: %w", h.cfg.Host, h.cfg.Port, err)
	}
	return nil
}

// sendError maps a failed send to the answer: a permanent refusal by the
// server (5xx SMTP reply) is final (422), anything else may pass on a
// retry (502).
func (h *Handler) sendError(key string, err error) error {
	h.log.Warn("send failed", "key", key, "err", err)
	var se *gomail.SendError
	if errors.As(err, &se) && se.ErrorCode() >= 500 && se.ErrorCode() < 600 {
		return fn.Errorf(http.StatusUnprocessableEntity, "rejected", "the mail server refused the mail (%d %s)",
			se.ErrorCode(), se.EnhancedStatusCode())
	}
	return fn.Errorf(http.StatusBadGateway, "smtp_failed", "the mail server did not take the mail; retry later")
}

// MessageID is the Message-ID of the mail sent under key: the same for
// every attempt, so a receiver can drop a duplicate.
func MessageID(key, domain string) string {
	sum := sha256.Sum256([]byte("tidings-mail\x00" + key))
	return "<" + hex.EncodeToString(sum[:16]) + "@" + domain + ">"
}

// digest identifies a mail's content under its key.
func digest(in mail.Request) string {
	sum := sha256.Sum256([]byte(in.To + "\x00" + in.Subject + "\x00" + in.Text))
	return hex.EncodeToString(sum[:])
}
