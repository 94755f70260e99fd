package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Rate is "Count events per Per", the shape of every throttle and quota
// (lib/ratelimit enforces them). The zero Rate is off: nothing is limited.
type Rate struct {
	Count int
	Per   time.Duration
}

// Off reports whether r limits nothing.
func (r Rate) Off() bool { return r.Count <= 0 || r.Per <= 0 }

// String renders r the way ParseRate reads it.
func (r Rate) String() string {
	if r.Off() {
		return "off"
	}
	return fmt.Sprintf("%d/%s", r.Count, r.Per)
}

// ParseRate reads "10/15m" (ten per fifteen minutes; the period is a Go
// duration or whole seconds) or "off".
func ParseRate(v string) (Rate, error) {
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "off") {
		return Rate{}, nil
	}
	count, per, ok := strings.Cut(v, "/")
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if !ok || err != nil || n <= 0 {
		return Rate{}, fmt.Errorf("not a rate: %q (want COUNT/PERIOD such as 10/15m, or off)", v)
	}
	d, err := ParseDuration(strings.TrimSpace(per))
	if err != nil || d <= 0 {
		return Rate{}, fmt.Errorf("not a rate: %q (want COUNT/PERIOD such as 10/15m, or off)", v)
	}
	return Rate{Count: n, Per: d}, nil
}

// Limits are the login throttles and the per-user quotas. Each rate is read
// from its environment variable ("10/15m" or "off"); the defaults are
// beside each field.
type Limits struct {
	LoginPerAccount  Rate // LOGIN_LIMIT_ACCOUNT: wrong passwords per account, default 10/15m
	LoginPerAddress  Rate // LOGIN_LIMIT_ADDRESS: wrong passwords per client address, default 100/15m
	TopicsPerUser    Rate // QUOTA_TOPICS: topics a user may create, default 50/24h
	PublishesPerUser Rate // QUOTA_PUBLISHES: publishes per user (HTTP and socket), default 120/1m
	JobsPerUser      Rate // QUOTA_JOBS: job enqueues per user, default 60/1m

	// LoginFailClosed (LOGIN_LIMIT_FAIL_CLOSED) refuses logins with 503
	// while the limiter's Redis cannot be reached; by default login stays
	// open (unthrottled) then, like every quota.
	LoginFailClosed bool
	// Timeout (RATE_LIMIT_TIMEOUT, default 500ms) bounds one limiter call
	// to Redis.
	Timeout time.Duration
}

// LoadLimits reads Limits from the environment.
func LoadLimits() (Limits, error) {
	var l Limits
	rates := []struct {
		key string
		dst *Rate
		def Rate
	}{
		{"LOGIN_LIMIT_ACCOUNT", &l.LoginPerAccount, Rate{10, 15 * time.Minute}},
		{"LOGIN_LIMIT_ADDRESS", &l.LoginPerAddress, Rate{100, 15 * time.Minute}},
		{"QUOTA_TOPICS", &l.TopicsPerUser, Rate{50, 24 * time.Hour}},
		{"QUOTA_PUBLISHES", &l.PublishesPerUser, Rate{120, time.Minute}},
		{"QUOTA_JOBS", &l.JobsPerUser, Rate{60, time.Minute}},
	}
	for _, r := range rates {
		*r.dst = r.def
		if v := os.Getenv(r.key); v != "" {
			rate, err := ParseRate(v)
			if err != nil {
				return l, fmt.Errorf("$%s: %w", r.key, err)
			}
			*r.dst = rate
		}
	}
	switch v := strings.ToLower(os.Getenv("LOGIN_LIMIT_FAIL_CLOSED")); v {
	case "", "false", "0", "no":
	case "true", "1", "yes":
		l.LoginFailClosed = true
	default:
		return l, fmt.Errorf("$LOGIN_LIMIT_FAIL_CLOSED: want true or false, not %q", v)
	}
	var err error
	if l.Timeout, err = Duration("RATE_LIMIT_TIMEOUT", 500*time.Millisecond); err != nil {
		return l, err
	}
	if l.Timeout <= 0 {
		return l, fmt.Errorf("$RATE_LIMIT_TIMEOUT must be positive")
	}
	return l, nil
}
