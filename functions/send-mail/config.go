package sendmail

import (
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"tidings/lib/config"
)

// SMTPPasswordSecret is the OpenFaaS secret holding the SMTP password (env
// fallback SMTP_PASSWORD).
const SMTPPasswordSecret = "tidings-smtp-password"

// Config is how send-mail reaches its mail server.
type Config struct {
	Host     string        // SMTP_HOST
	Port     int           // SMTP_PORT
	StartTLS string        // SMTP_STARTTLS: none, opportunistic or mandatory
	Auth     string        // SMTP_AUTH: a go-mail mechanism name (plain, login, cram-md5, scram-sha-256, ...); used when User is set
	User     string        // SMTP_USER; empty means no AUTH
	Password string        // secret tidings-smtp-password (env SMTP_PASSWORD)
	From     string        // MAIL_FROM: the sender, "Name <address>" or an address
	Timeout  time.Duration // SMTP_TIMEOUT: one whole SMTP transaction

	// ClaimLease (MAIL_CLAIM_LEASE) is how long a claim on an idempotency
	// key holds before another attempt may take it over and send again. It
	// must outlast a send (Timeout) plus marking it, or a slow first send
	// and its retry could both go out.
	ClaimLease time.Duration
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

// ConfigFromEnv reads the SMTP settings from the environment and the
// password from the secret tidings-smtp-password (or $SMTP_PASSWORD), over
// DefaultConfig.
func ConfigFromEnv(c config.Config) (Config, error) {
	cfg := DefaultConfig()
	cfg.Host = config.Env("SMTP_HOST", cfg.Host)
	cfg.StartTLS = config.Env("SMTP_STARTTLS", cfg.StartTLS)
	cfg.Auth = config.Env("SMTP_AUTH", cfg.Auth)
	cfg.User = config.Env("SMTP_USER", "")
	cfg.From = config.Env("MAIL_FROM", cfg.From)
	port, err := strconv.Atoi(config.Env("SMTP_PORT", strconv.Itoa(cfg.Port)))
	if err != nil {
		return cfg, fmt.Errorf("$SMTP_PORT: not a port number")
	}
	cfg.Port = port
	if cfg.Timeout, err = config.Duration("SMTP_TIMEOUT", cfg.Timeout); err != nil {
		return cfg, err
	}
	if cfg.ClaimLease, err = config.Duration("MAIL_CLAIM_LEASE", cfg.ClaimLease); err != nil {
		return cfg, err
	}
	if cfg.User != "" {
		if cfg.Password, err = c.Secret(SMTPPasswordSecret); err != nil {
			return cfg, fmt.Errorf("SMTP_USER is set: %w", err)
		}
	}
	return cfg, cfg.Validate()
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
