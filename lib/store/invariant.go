package store

import (
	"context"
	"fmt"
	"strings"
)

// CheckInvariant verifies what must hold across the participants' two
// databases once every transaction and ack has finished: each user's
// unread count in the counter database equals the committed notifications
// delivered to them in the persist database minus their acks there, and
// neither database holds anything half-done (a prepared notification or
// increment, a prepared barrier, an ack not yet applied). persist and
// counter may be one database. It returns an error naming every violation.
func CheckInvariant(ctx context.Context, persist, counter Querier) error {
	owed, err := perUser(ctx, persist, `
		SELECT d.user_id, count(*) FILTER (WHERE d.acked_at IS NULL)
		FROM deliveries d JOIN notifications n ON n.id = d.notification_id
		WHERE n.state = 'committed' GROUP BY d.user_id`)
	if err != nil {
		return fmt.Errorf("check deliveries: %w", err)
	}
	counted, err := perUser(ctx, counter, `SELECT user_id, unread FROM counters`)
	if err != nil {
		return fmt.Errorf("check counters: %w", err)
	}
	var problems []string
	for user := range union(owed, counted) {
		if owed[user] != counted[user] && len(problems) < 20 {
			problems = append(problems, fmt.Sprintf("user %d: unread counter %d, but %d unacked committed deliveries", user, counted[user], owed[user]))
		}
	}
	leftovers := []struct {
		db    Querier
		what  string
		query string
	}{
		{persist, "notifications still prepared", `SELECT count(*) FROM notifications WHERE state = 'prepared'`},
		{persist, "acks not yet applied to the counter", `SELECT count(*) FROM ack_outbox`},
		{persist, "transactions still prepared at persist", `SELECT count(*) FROM tx_barriers WHERE state = 'prepared' AND participant = 'persist'`},
		{counter, "increments still pending", `SELECT count(*) FROM pending_increments`},
		{counter, "transactions still prepared at counter", `SELECT count(*) FROM tx_barriers WHERE state = 'prepared' AND participant = 'counter'`},
	}
	for _, l := range leftovers {
		var n int64
		if err := l.db.QueryRow(ctx, l.query).Scan(&n); err != nil {
			return fmt.Errorf("check %s: %w", l.what, err)
		}
		if n > 0 {
			problems = append(problems, fmt.Sprintf("%d %s", n, l.what))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("invariant broken: %s", strings.Join(problems, "; "))
	}
	return nil
}

func union(a, b map[int64]int64) map[int64]bool {
	keys := map[int64]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return keys
}
