package sendmail

import (
	"fmt"
	"net/mail"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"tidings/lib/config"
)

// SMTPPasswordSecret is the OpenFaaS secret holding the SMTP password (env
// fallback SMTP_PASSWORD).
const SMTPPasswordSecret = "tidings-smtp-password"

// Config is how send-mail reaches its mail server; DefaultConfig holds
// the defaults.
type Config struct {
	Host     string        `env:"SMTP_HOST"`
	Port     int           `env:"SMTP_PORT"`
	StartTLS string        `env:"SMTP_STARTTLS"` // none, opportunistic or mandatory
	Auth     string        `env:"SMTP_AUTH"`     // a go-mail mechanism name (plain, login, cram-md5, scram-sha-256, ...); used when User is set
	User     string        `env:"SMTP_USER"`     // empty means no AUTH
	Password string        `env:"-"`             // secret tidings-smtp-password (env SMTP_PASSWORD), read by Build when User is set
	From     string        `env:"MAIL_FROM"`     // the sender, "Name <address>" or an address
	Timeout  time.Duration `env:"SMTP_TIMEOUT"`  // one whole SMTP transaction

	// ClaimLease is how long a claim on an idempotency key holds before
	// another attempt may take it over and send again. It must outlast a
	// send (Timeout) plus marking it, or a slow first send and its retry
	// could both go out.
	ClaimLease time.Duration `env:"MAIL_CLAIM_LEASE"`
}

// DefaultConfig is the mail server `make up` runs (infra/mailsink): plain
// SMTP on the loopback, no authentication.
func DefaultConfig() Config {
	return Config{
		Host:       "127.0.0.1",
		Port:       2525,
		StartTLS:   "opportunistic",
		Auth:       "plain",
		From:       "tidings <noreply@tidings.local>",
		Timeout:    15 * time.Second,
		ClaimLease: time.Minute,
	}
}

// withPassword reads the password from the secret tidings-smtp-password
// (or $SMTP_PASSWORD) when a User is set.
func (c Config) withPassword(secrets config.Config) (Config, error) {
	if c.User == "" || c.Password != "" {
		return c, nil
	}
	var err error
	if c.Password, err = secrets.Secret(SMTPPasswordSecret); err != nil {
		return c, fmt.Errorf("SMTP_USER is set: %w", err)
	}
	return c, nil
}

// Validate checks the settings a send would otherwise trip over.
func (c Config) Validate() error {
	if c.Host == "" || c.Port <= 0 || c.Port > 65535 {
		return fmt.Errorf("SMTP server %s:%d is not a host and port", c.Host, c.Port)
	}
	if _, err := c.tlsPolicy(); err != nil {
		return err
	}
	if c.User != "" {
		var mech gomail.SMTPAuthType
		if err := mech.UnmarshalString(c.Auth); err != nil {
			return fmt.Errorf("$SMTP_AUTH: %w", err)
		}
	}
	if _, err := c.senderDomain(); err != nil {
		return err
	}
	if c.Timeout <= 0 || c.ClaimLease <= c.Timeout {
		return fmt.Errorf("MAIL_CLAIM_LEASE (%v) must be longer than SMTP_TIMEOUT (%v)", c.ClaimLease, c.Timeout)
	}
	return nil
}

func (c Config) tlsPolicy() (gomail.TLSPolicy, error) {
	switch strings.ToLower(c.StartTLS) {
	case "none":
		return gomail.NoTLS, nil
	case "opportunistic":
		return gomail.TLSOpportunistic, nil
	case "mandatory":
		return gomail.TLSMandatory, nil
	}
	return 0, fmt.Errorf("$SMTP_STARTTLS %q: want none, opportunistic or mandatory", c.StartTLS)
}

// senderDomain is the domain of the From address: Message-IDs are made
// under it.
func (c Config) senderDomain() (string, error) {
	a, err := mail.ParseAddress(c.From)
	if err != nil {
		return "", fmt.Errorf("$MAIL_FROM %q: %w", c.From, err)
	}
	_, domain, ok := strings.Cut(a.Address, "@")
	if !ok || domain == "" {
		return "", fmt.Errorf("$MAIL_FROM %q has no domain", c.From)
	}
	return domain, nil
}
