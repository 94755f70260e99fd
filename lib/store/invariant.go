package store

import (
	"context"
	"fmt"
	"strings"
)

// CheckInvariant verifies what must hold once every transaction has
// finished: each user's unread count equals the committed notifications
// delivered to them minus their acks, and no prepared notification,
// pending increment or prepared barrier is left. It returns an error naming every violation.
func CheckInvariant(ctx context.Context, q Querier) error {
	var problems []string
	rows, err := q.Query(ctx, `
		WITH owed AS (
			SELECT d.user_id, count(*) FILTER (WHERE d.acked_at IS NULL) AS unread
			FROM deliveries d JOIN notifications n ON n.id = d.notification_id
			WHERE n.state = 'committed' GROUP BY d.user_id
		)
		SELECT coalesce(o.user_id, c.user_id), coalesce(o.unread, 0), coalesce(c.unread, 0)
		FROM owed o FULL JOIN counters c ON c.user_id = o.user_id
		WHERE coalesce(o.unread, 0) <> coalesce(c.unread, 0)
		ORDER BY 1 LIMIT 20`)
	if err != nil {
		return fmt.Errorf("check counters: %w", err)
	}
	for rows.Next() {
		var user, owed, counted int64
		if err := rows.Scan(&user, &owed, &counted); err != nil {
			rows.Close()
			return err
		}
		problems = append(problems, fmt.Sprintf("user %d: unread counter %d, but %d unacked committed deliveries", user, counted, owed))
	}
	rows.Close()
	var prepared, pending, barriers int64
	if err := q.QueryRow(ctx, `SELECT (SELECT count(*) FROM notifications WHERE state = 'prepared'),
		(SELECT count(*) FROM pending_increments),
		(SELECT count(*) FROM tx_barriers WHERE state = 'prepared')`).Scan(&prepared, &pending, &barriers); err != nil {
		return fmt.Errorf("check leftovers: %w", err)
	}
	if prepared > 0 {
		problems = append(problems, fmt.Sprintf("%d notifications still prepared", prepared))
	}
	if pending > 0 {
		problems = append(problems, fmt.Sprintf("%d increments still pending", pending))
	}
	if barriers > 0 {
		problems = append(problems, fmt.Sprintf("%d transactions still prepared at a participant", barriers))
	}
	if len(problems) > 0 {
		return fmt.Errorf("invariant broken: %s", strings.Join(problems, "; "))
	}
	return nil
}
