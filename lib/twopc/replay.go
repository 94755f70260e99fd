package twopc

import (
	"time"

	"tidings/lib/fn"
	"tidings/lib/notification"
)

// The replay's messages: gateway-ws reads a user's committed notifications
// after a given id from the persist participant (notify-since), to replay
// them on a join of user:<id> with {"since": id} and to fill the gap a
// broker outage may have left on a joined socket; see docs/architecture.md
// ("Replay").

// SinceQuery asks notify-since for up to Limit (0: MaxSince) committed
// notifications delivered to User with an id above Since, oldest first;
// with After set, only those created at or after it (a socket joined
// without since has no id to start from, only its join's time).
type SinceQuery struct {
	User  int64     `json:"user_id"`
	Since int64     `json:"since"`
	After time.Time `json:"after,omitzero"`
	Limit int       `json:"limit,omitempty"`
}

// Since answers a SinceQuery: the notifications, oldest first, and how
// many committed notifications delivered to the user and not acked have
// an id above the last one listed (above Since when none is), and how
// many there are in all, counted together.
type Since struct {
	Notifications []notification.Notification `json:"notifications"`
	UnackedNewer  int64                       `json:"unacked_newer"`
	Unacked       int64                       `json:"unacked"`
}

// MaxSince bounds one notify-since answer; the caller asks again from the
// last id for more.
const MaxSince = 1000

// Check refuses a query without a positive user, with a negative since or
// a limit out of range.
func (q SinceQuery) Check() error {
	if q.User <= 0 {
		return fn.BadRequest("user_id must be positive")
	}
	if q.Since < 0 {
		return fn.BadRequest("since must not be negative")
	}
	if q.Limit < 0 || q.Limit > MaxSince {
		return fn.BadRequest("limit must be 1 to %d (0: %d)", MaxSince, MaxSince)
	}
	return nil
}
