-- +goose Up
-- The counter participant's database (COUNTER_DATABASE_URL): every user's
-- unread count, the increments prepared and not yet committed, the acks
-- applied, and its barrier. Nothing here refers to another database.
--
-- IF NOT EXISTS: a database tidings used before the participants had their
-- own migrations already holds these tables; they are kept.

-- The barrier, as in the persist migrations (the same table where both
-- participants share a database, rows told apart by participant).
CREATE TABLE IF NOT EXISTS tx_barriers (
    tx_id       text        NOT NULL,
    participant text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('prepared', 'committed', 'rolled_back')),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tx_id, participant)
);
CREATE INDEX IF NOT EXISTS tx_barriers_in_doubt_idx ON tx_barriers (participant, updated_at) WHERE state = 'prepared';

-- Increments wait here until commit.
CREATE TABLE IF NOT EXISTS pending_increments (
    tx_id   text   NOT NULL,
    user_id bigint NOT NULL,
    PRIMARY KEY (tx_id, user_id)
);

CREATE TABLE IF NOT EXISTS counters (
    user_id bigint PRIMARY KEY,
    unread  bigint NOT NULL DEFAULT 0 CHECK (unread >= 0)
);

-- Every ack (ack_outbox.id in the persist database) whose decrement was
-- applied, so a relayed ack is applied once however often it arrives.
CREATE TABLE applied_acks (
    ack_id     bigint      PRIMARY KEY,
    user_id    bigint      NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
-- tx_barriers stays: the persist participant's rows may share it.
DROP TABLE applied_acks;
DROP TABLE counters;
DROP TABLE pending_increments;
