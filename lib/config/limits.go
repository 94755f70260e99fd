package config

import (
	"fmt"
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
	return fmt.Sprintf("%d/%s", r.Count, formatDuration(r.Per))
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

// Limits are the login throttles and the per-user quotas. Each rate is
// "10/15m" or "off"; DefaultLimits holds the defaults.
type Limits struct {
	LoginPerAccount  Rate `env:"LOGIN_LIMIT_ACCOUNT"` // wrong passwords per account
	LoginPerAddress  Rate `env:"LOGIN_LIMIT_ADDRESS"` // wrong passwords per client address
	TopicsPerUser    Rate `env:"QUOTA_TOPICS"`        // topics a user may create
	PublishesPerUser Rate `env:"QUOTA_PUBLISHES"`     // publishes per user (HTTP and socket)
	JobsPerUser      Rate `env:"QUOTA_JOBS"`          // job enqueues per user

	// LoginFailClosed refuses logins with 503 while the limiter's Redis
	// cannot be reached; by default login stays open (unthrottled) then,
	// like every quota.
	LoginFailClosed bool `env:"LOGIN_LIMIT_FAIL_CLOSED"`
	// Timeout bounds one limiter call to Redis.
	Timeout time.Duration `env:"RATE_LIMIT_TIMEOUT"`
}

// DefaultLimits is Limits' defaults.
func DefaultLimits() Limits {
	return Limits{
		LoginPerAccount:  Rate{10, 15 * time.Minute},
		LoginPerAddress:  Rate{100, 15 * time.Minute},
		TopicsPerUser:    Rate{50, 24 * time.Hour},
		PublishesPerUser: Rate{120, time.Minute},
		JobsPerUser:      Rate{60, time.Minute},
		Timeout:          500 * time.Millisecond,
	}
}

// Validate refuses a limiter timeout that is not positive.
func (l Limits) Validate() error {
	return Positive(map[string]bool{"RATE_LIMIT_TIMEOUT": l.Timeout > 0})
}
