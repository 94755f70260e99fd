package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// MailClaim is what ClaimMail found for an idempotency key.
type MailClaim int

// What a claim on a mail's idempotency key can come to.
const (
	// MailClaimed: the caller holds the claim and must send, then call
	// MarkMailSent, or ReleaseMail when the send failed.
	MailClaimed MailClaim = iota
	// MailAlreadySent: the mail went out before; send nothing.
	MailAlreadySent
	// MailInProgress: another sender holds a live claim on the key.
	MailInProgress
	// MailKeyReused: the key was first used for a different mail.
	MailKeyReused
)

// ClaimMail claims the idempotency key for one send. A key is claimed when
// it is new, or when its earlier claim is older than lease (its sender
// died between claiming and marking), in which case the mail is sent again
// with the same Message-ID. digest identifies the mail's content, so a key
// reused for another mail is refused; token identifies this claim.
func ClaimMail(ctx context.Context, q Querier, key, digest, messageID, token string, lease time.Duration) (MailClaim, error) {
	var got string
	err := q.QueryRow(ctx, `
		INSERT INTO sent_mails (idempotency_key, digest, message_id, state, claim_token)
		VALUES ($1, $2, $3, 'sending', $4)
		ON CONFLICT (idempotency_key) DO UPDATE
			SET claim_token = EXCLUDED.claim_token, claimed_at = now(), attempts = sent_mails.attempts + 1
			WHERE sent_mails.state = 'sending' AND sent_mails.digest = EXCLUDED.digest
				AND sent_mails.claimed_at < now() - $5 * interval '1 millisecond'
		RETURNING claim_token`, key, digest, messageID, token, lease.Milliseconds()).Scan(&got)
	if err == nil {
		return MailClaimed, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("claim mail %s: %w", key, err)
	}
	var state, had string
	err = q.QueryRow(ctx, `SELECT state, digest FROM sent_mails WHERE idempotency_key = $1`, key).Scan(&state, &had)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// Released between the two statements: the caller may try again.
		return MailInProgress, nil
	case err != nil:
		return 0, fmt.Errorf("read mail claim %s: %w", key, err)
	case had != digest:
		return MailKeyReused, nil
	case state == "sent":
		return MailAlreadySent, nil
	}
	return MailInProgress, nil
}

// MarkMailSent records that the mail under key went out.
func MarkMailSent(ctx context.Context, q Querier, key string) error {
	_, err := q.Exec(ctx, `UPDATE sent_mails SET state = 'sent', sent_at = now() WHERE idempotency_key = $1`, key)
	if err != nil {
		return fmt.Errorf("mark mail %s sent: %w", key, err)
	}
	return nil
}

// ReleaseMail drops a claim whose send failed, so a retry may send at once;
// it leaves a claim taken over by another sender alone.
func ReleaseMail(ctx context.Context, q Querier, key, token string) error {
	_, err := q.Exec(ctx, `DELETE FROM sent_mails WHERE idempotency_key = $1 AND state = 'sending' AND claim_token = $2`, key, token)
	if err != nil {
		return fmt.Errorf("release mail claim %s: %w", key, err)
	}
	return nil
}
