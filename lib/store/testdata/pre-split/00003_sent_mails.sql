-- +goose Up
-- One row per mail send-mail was asked for, by idempotency key, so that a
-- retried job never sends the same mail twice. 'sending' is a claim held
-- while the SMTP transaction runs (claimed_at bounds it: a claim older than
-- the lease belongs to a sender that died and may be taken over); 'sent'
-- is final.
CREATE TABLE sent_mails (
    idempotency_key text        PRIMARY KEY,
    digest          text        NOT NULL, -- hash of recipient, subject and text: a reused key must name the same mail
    message_id      text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('sending', 'sent')),
    claim_token     text        NOT NULL,
    attempts        int         NOT NULL DEFAULT 1,
    claimed_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);

-- +goose Down
DROP TABLE sent_mails;
