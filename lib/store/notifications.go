package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"tidings/lib/notification"
)

// PrepareNotification stores d as the prepared notification of
// transaction txID, with one delivery per recipient of the transaction's
// recipient set, read from dir (the directory) in chunks and copied into
// tx; the set must hold want recipients (ErrRecipientSet otherwise). It
// returns the notification's id.
func PrepareNotification(ctx context.Context, tx Tx, dir Querier, txID string, d notification.Draft, want int) (int64, error) {
	id, err := insertNotification(ctx, tx, txID, d)
	if err != nil {
		return 0, err
	}
	err = copyRecipients(ctx, dir, tx, txID, want, "deliveries", []string{"notification_id", "user_id"},
		func(user int64) []any { return []any{id, user} })
	return id, err
}

// PrepareNotificationFor is PrepareNotification for the recipients given
// rather than a recipient set: for notifications made without a
// coordinator (tests, tools), a handful of recipients.
func PrepareNotificationFor(ctx context.Context, q Querier, txID string, d notification.Draft, recipients []int64) (int64, error) {
	id, err := insertNotification(ctx, q, txID, d)
	if err != nil {
		return 0, err
	}
	_, err = q.Exec(ctx, `
		INSERT INTO deliveries (notification_id, user_id)
		SELECT $1, u FROM unnest($2::bigint[]) AS u ON CONFLICT DO NOTHING`, id, recipients)
	return id, mapError(err)
}

// insertNotification stores d as the prepared notification of txID; a
// direct notification's topic and sender (0) are NULL.
func insertNotification(ctx context.Context, q Querier, txID string, d notification.Draft) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `
		INSERT INTO notifications (tx_id, topic_id, sender_id, title, body, email, state)
		VALUES ($1, NULLIF($2::bigint, 0), NULLIF($3::bigint, 0), $4, $5, $6, 'prepared') RETURNING id`,
		txID, d.TopicID, d.SenderID, d.Title, d.Body, d.Email).Scan(&id)
	return id, mapError(err)
}

// NotificationByTx returns the id of the notification of a transaction.
func NotificationByTx(ctx context.Context, q Querier, txID string) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `SELECT id FROM notifications WHERE tx_id = $1`, txID).Scan(&id)
	return id, mapError(err)
}

// CommitNotification makes a prepared notification visible.
func CommitNotification(ctx context.Context, q Querier, txID string) error {
	_, err := q.Exec(ctx, `UPDATE notifications SET state = 'committed' WHERE tx_id = $1`, txID)
	return mapError(err)
}

// DropNotification removes a prepared notification and its deliveries.
func DropNotification(ctx context.Context, q Querier, txID string) error {
	_, err := q.Exec(ctx, `DELETE FROM notifications WHERE tx_id = $1 AND state = 'prepared'`, txID)
	return mapError(err)
}

// ListNotifications returns up to limit committed notifications delivered
// to userID, newest first, older than before when before > 0, and only
// the unacked ones when unreadOnly.
//
// Any page costs about the first's: the user's deliveries are walked down
// deliveries_user_idx (user_id, notification_id DESC), or for unreadOnly
// the partial deliveries_unread_idx (the same, WHERE acked_at IS NULL),
// from before, and each one's notification is looked up by its key to
// check that it is committed, until limit are found. The lateral subquery
// (OFFSET 0 keeps the planner from flattening it) holds that plan: joined
// plainly, the planner may merge-join with the notifications key scanned
// from the newest notification down to before, which is the whole history
// above the page (the last page of 100,000 took a second). The two
// filters are two statements, not a parameter, so that the planner sees
// the partial index's predicate in the query.
func ListNotifications(ctx context.Context, q Querier, userID int64, limit int, before int64, unreadOnly bool) ([]notification.Notification, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	query := listAll
	if unreadOnly {
		query = listUnread
	}
	rows, err := q.Query(ctx, query, userID, limit, before)
	if err != nil {
		return nil, mapError(err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (notification.Notification, error) {
		var n notification.Notification
		err := row.Scan(&n.ID, &n.TopicID, &n.SenderID, &n.Title, &n.Body, &n.CreatedAt, &n.AckedAt)
		return n, err
	})
	return list, mapError(err)
}

// listNotifications is ListNotifications' statement; %s is an extra
// condition on the deliveries d.
const listNotifications = `
		SELECT n.id, n.topic_id, n.sender_id, n.title, n.body, n.created_at, d.acked_at
		FROM deliveries d CROSS JOIN LATERAL (
			SELECT * FROM notifications n WHERE n.id = d.notification_id AND n.state = 'committed' OFFSET 0) n
		WHERE d.user_id = $1 AND d.notification_id < $3 %s
		ORDER BY d.notification_id DESC LIMIT $2`

var (
	listAll    = fmt.Sprintf(listNotifications, "")
	listUnread = fmt.Sprintf(listNotifications, "AND d.acked_at IS NULL")
)

// Ack is an ack the persist participant recorded whose unread decrement
// the counter has not confirmed yet: a row of the ack outbox. Deliveries
// is how many deliveries it marked read, the decrement: 1 for an ack of
// one notification (RecordAck), any number for an ack-all (RecordAckAll,
// whose NotificationID is the newest it marked).
type Ack struct {
	ID             int64 `json:"id"`
	UserID         int64 `json:"user_id"`
	NotificationID int64 `json:"notification_id"`
	Deliveries     int64 `json:"deliveries"`
}

// RecordAck marks a committed notification delivered to userID as read
// and, in the same transaction, puts the ack in the outbox for the counter
// (ApplyAcks). It returns the outbox row's id (a repeated ack finds the
// pending row that marked the delivery, or a later one of the user, see
// pendingAckOf; 0 when none is pending: the counter applied it already)
// and the user's unread count as this database sees it: committed
// deliveries not acked. ErrNotFound when no such delivery.
func RecordAck(ctx context.Context, db Beginner, userID, notificationID int64) (ackID, unread int64, err error) {
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var acked bool
		err := tx.QueryRow(ctx, `
			SELECT d.acked_at IS NOT NULL FROM deliveries d JOIN notifications n ON n.id = d.notification_id
			WHERE d.notification_id = $1 AND d.user_id = $2 AND n.state = 'committed'
			FOR UPDATE OF d`, notificationID, userID).Scan(&acked)
		if err != nil {
			return err
		}
		if !acked {
			if _, err := tx.Exec(ctx, `UPDATE deliveries SET acked_at = now() WHERE notification_id = $1 AND user_id = $2`,
				notificationID, userID); err != nil {
				return err
			}
			err = tx.QueryRow(ctx, `INSERT INTO ack_outbox (user_id, notification_id) VALUES ($1, $2) RETURNING id`,
				userID, notificationID).Scan(&ackID)
		} else {
			ackID, err = pendingAckOf(ctx, tx, userID, notificationID)
		}
		if err != nil {
			return err
		}
		unread, err = UnreadDeliveries(ctx, tx, userID)
		return err
	})
	return ackID, unread, mapError(err)
}

// RecordAckAll marks every committed notification delivered to userID and
// not acked as read and, in the same transaction, puts one ack for all of
// them in the outbox (its Deliveries their number), so the counter lowers
// the count by exactly the deliveries this call marked: a delivery is
// marked once, whichever of RecordAck and RecordAckAll, however many at
// once, gets it first. It returns the outbox row's id (when nothing was
// left to mark, the user's newest pending ack, or 0 when none is pending)
// and the user's unread count as this database sees it afterwards (0
// unless a notification committed meanwhile).
//
// The rows are locked in one order (notification id) before they are
// marked, so two ack-alls of a user never deadlock, and a row another call
// marked meanwhile is skipped (FOR UPDATE rechecks acked_at IS NULL on the
// row's newest version).
func RecordAckAll(ctx context.Context, db Beginner, userID int64) (ackID, unread int64, err error) {
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			WITH target AS (
				SELECT d.notification_id FROM deliveries d JOIN notifications n ON n.id = d.notification_id
				WHERE d.user_id = $1 AND d.acked_at IS NULL AND n.state = 'committed'
				ORDER BY d.notification_id FOR UPDATE OF d
			), marked AS (
				UPDATE deliveries SET acked_at = now()
				WHERE user_id = $1 AND notification_id IN (SELECT notification_id FROM target)
				RETURNING notification_id
			)
			INSERT INTO ack_outbox (user_id, notification_id, deliveries)
			SELECT $1, max(notification_id), count(*) FROM marked HAVING count(*) > 0
			RETURNING id`, userID).Scan(&ackID)
		if errors.Is(err, pgx.ErrNoRows) {
			ackID, err = pendingAckOf(ctx, tx, userID, 0)
		}
		if err != nil {
			return err
		}
		unread, err = UnreadDeliveries(ctx, tx, userID)
		return err
	})
	return ackID, unread, mapError(err)
}

// pendingAckOf returns the newest pending ack of userID that may have
// marked the delivery of notificationID (0: any of the user's), or 0 when
// there is none. The ack that marked it has a NotificationID at least as
// large (RecordAckAll's is the newest it marked); the relay applies acks
// oldest first, so once the newest such ack is applied, so is that one.
func pendingAckOf(ctx context.Context, q Querier, userID, notificationID int64) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM ack_outbox WHERE user_id = $1 AND notification_id >= $2`,
		userID, notificationID).Scan(&id)
	return id, err
}

// UnreadDeliveries counts the committed notifications delivered to userID
// and not acked: what the counter holds for the user once every
// transaction and ack has been applied.
func UnreadDeliveries(ctx context.Context, q Querier, userID int64) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `
		SELECT count(*) FROM deliveries d JOIN notifications n ON n.id = d.notification_id
		WHERE d.user_id = $1 AND d.acked_at IS NULL AND n.state = 'committed'`, userID).Scan(&n)
	return n, mapError(err)
}

// PendingAcks returns up to limit acks of the outbox, oldest first.
func PendingAcks(ctx context.Context, q Querier, limit int) ([]Ack, error) {
	rows, err := q.Query(ctx, `SELECT id, user_id, notification_id, deliveries FROM ack_outbox ORDER BY id LIMIT $1`, limit)
	if err != nil {
		return nil, mapError(err)
	}
	acks, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Ack])
	return acks, mapError(err)
}

// ForgetAcks removes acks the counter has applied from the outbox.
func ForgetAcks(ctx context.Context, q Querier, ids []int64) error {
	_, err := q.Exec(ctx, `DELETE FROM ack_outbox WHERE id = ANY($1)`, ids)
	return mapError(err)
}

// NotificationsSince returns up to limit committed notifications delivered
// to userID with an id above since, oldest first, created at or after
// after when after is not zero; and unackedNewer, how many committed
// notifications delivered to userID and not acked have an id above the
// last one returned (above since when none is), and unacked, how many
// there are in all, both read by one statement: what a replay
// (notify-since) needs to tell each replayed notification's unread count.
//
// The walk is ListNotifications' up deliveries_user_idx from since; after
// filters on the way and does not shorten it.
func NotificationsSince(ctx context.Context, q Querier, userID, since int64, after time.Time, limit int) (list []notification.Notification, unackedNewer, unacked int64, err error) {
	var afterArg *time.Time
	if !after.IsZero() {
		afterArg = &after
	}
	rows, err := q.Query(ctx, `
		SELECT n.id, n.topic_id, n.sender_id, n.title, n.body, n.created_at, d.acked_at
		FROM deliveries d CROSS JOIN LATERAL (
			SELECT * FROM notifications n WHERE n.id = d.notification_id AND n.state = 'committed'
			AND ($4::timestamptz IS NULL OR n.created_at >= $4) OFFSET 0) n
		WHERE d.user_id = $1 AND d.notification_id > $3
		ORDER BY d.notification_id ASC LIMIT $2`, userID, limit, since, afterArg)
	if err != nil {
		return nil, 0, 0, mapError(err)
	}
	list, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (notification.Notification, error) {
		var n notification.Notification
		err := row.Scan(&n.ID, &n.TopicID, &n.SenderID, &n.Title, &n.Body, &n.CreatedAt, &n.AckedAt)
		return n, err
	})
	if err != nil {
		return nil, 0, 0, mapError(err)
	}
	last := since
	if len(list) > 0 {
		last = list[len(list)-1].ID
	}
	err = q.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE d.notification_id > $2), count(*)
		FROM deliveries d JOIN notifications n ON n.id = d.notification_id
		WHERE d.user_id = $1 AND d.acked_at IS NULL AND n.state = 'committed'`,
		userID, last).Scan(&unackedNewer, &unacked)
	return list, unackedNewer, unacked, mapError(err)
}
