// Package twopc holds the messages of tidings's two-phase commit: what the
// coordinator in gateway-ws sends the participants (notify-*, counter-*)
// and what they answer. The participants' behaviour lives in lib/barrier.
package twopc

import (
	"regexp"

	"tidings/lib/fn"
	"tidings/lib/notification"
)

// Participant names, as recorded in barriers and transaction records.
const (
	Persist = "persist" // notify-prepare, notify-commit, notify-rollback
	Counter = "counter" // counter-prepare, counter-commit, counter-rollback
)

// NotifyPrepare asks the persist participant to store a notification,
// invisible until commit, delivered to the transaction's recipient set
// (which the participant reads from the directory and which must hold
// Recipients ids): on the wire {tx_id, topic_id, sender_id, title, body,
// email, recipients_count}, bounded whatever the topic's size.
type NotifyPrepare struct {
	TxID string `json:"tx_id"`
	notification.Draft
}

// CounterPrepare asks the counter participant to hold one unread increment
// per recipient of the transaction's recipient set, which must hold
// Recipients ids, until commit: {tx_id, recipients_count}.
type CounterPrepare struct {
	TxID       string `json:"tx_id"`
	Recipients int    `json:"recipients_count"`
}

// Decision is a commit or rollback of one transaction.
type Decision struct {
	TxID string `json:"tx_id"`
}

// Vote is a participant's yes to a prepare; a no is any error answer.
type Vote struct {
	TxID           string `json:"tx_id"`
	Prepared       bool   `json:"prepared"`
	NotificationID int64  `json:"notification_id,omitempty"`
}

// Outcome answers a commit or rollback. It names no recipient: the
// recipients' counts are read afterwards in batches (counter-read), so the
// answer stays the same size whatever the topic's.
type Outcome struct {
	TxID           string `json:"tx_id"`
	State          string `json:"state"`
	NotificationID int64  `json:"notification_id,omitempty"`
}

// InDoubtQuery asks a participant (notify-indoubt, counter-indoubt) for
// the transactions it has held prepared for longer than OlderThanMs: the
// ones whose coordinator may have lost its record, which recovery finishes
// without it.
type InDoubtQuery struct {
	OlderThanMs int64 `json:"older_than_ms"`
	Limit       int   `json:"limit,omitempty"` // 0: MaxInDoubt
}

// InDoubt answers an InDoubtQuery, oldest first.
type InDoubt struct {
	TxIDs []string `json:"tx_ids"`
}

// MaxInDoubt bounds one InDoubt answer; recovery asks again next pass.
const MaxInDoubt = 1000

// MaxRecipients bounds the recipients of one transaction. No call body
// carries them (see NotifyPrepare), so it bounds only the work of one
// prepare and commit.
const MaxRecipients = 100000

// MaxUnreadBatch bounds the users of one counter-read call: a batch's
// body stays under 64 KiB (the function host's default limit) whatever
// the ids' lengths.
const MaxUnreadBatch = 2000

var txIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// CheckTxID refuses a malformed transaction id with a 400.
func CheckTxID(id string) error {
	if !txIDPattern.MatchString(id) {
		return fn.BadRequest("tx_id must be 1 to 64 letters, digits, '-' or '_'")
	}
	return nil
}

// CheckRecipients refuses a recipient count that is negative or too large.
func CheckRecipients(n int) error {
	if n < 0 || n > MaxRecipients {
		return fn.BadRequest("recipients_count must be 0 to %d", MaxRecipients)
	}
	return nil
}
