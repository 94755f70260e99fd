-- +goose Up
-- The persist participant's database (PERSIST_DATABASE_URL): notifications,
-- who they went to, the acks not yet applied to the counter, and its
-- barrier. Nothing here refers to another database: user and topic ids
-- are checked where they live (the directory) before they get here.
--
-- IF NOT EXISTS: a database tidings used before the participants had their
-- own migrations already holds these tables (with foreign keys to users and
-- topics, harmless where all three URLs are one database); they are kept.

-- One row per transaction and participant: what the participant did with
-- the transaction, so commit and rollback are idempotent and a prepare
-- that arrives after its rollback is refused. The counter's migrations
-- create the same table: where both participants share a database they
-- share it, their rows told apart by participant.
CREATE TABLE IF NOT EXISTS tx_barriers (
    tx_id       text        NOT NULL,
    participant text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('prepared', 'committed', 'rolled_back')),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tx_id, participant)
);
-- Recovery asks for the transactions held prepared for long; few rows are
-- ever prepared, so a partial index keeps that cheap.
CREATE INDEX IF NOT EXISTS tx_barriers_in_doubt_idx ON tx_barriers (participant, updated_at) WHERE state = 'prepared';

-- A prepared notification is invisible to readers.
CREATE TABLE IF NOT EXISTS notifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id      text        NOT NULL UNIQUE,
    topic_id   bigint      NOT NULL,
    sender_id  bigint      NOT NULL,
    title      text        NOT NULL,
    body       text        NOT NULL DEFAULT '',
    email      boolean     NOT NULL DEFAULT false,
    state      text        NOT NULL CHECK (state IN ('prepared', 'committed')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Who a notification went to, fixed by the coordinator at publish time.
CREATE TABLE IF NOT EXISTS deliveries (
    notification_id bigint      NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    user_id         bigint      NOT NULL,
    acked_at        timestamptz,
    PRIMARY KEY (notification_id, user_id)
);
CREATE INDEX IF NOT EXISTS deliveries_user_idx ON deliveries (user_id, notification_id DESC);

-- Acks recorded here (deliveries.acked_at set in the same transaction)
-- whose unread decrement the counter has not confirmed yet: gateway-ws
-- relays each to counter-ack, which applies it once, then deletes it.
CREATE TABLE ack_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint      NOT NULL,
    notification_id bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (notification_id, user_id)
);

-- +goose Down
-- tx_barriers stays: the counter's rows may share it.
DROP TABLE ack_outbox;
DROP TABLE deliveries;
DROP TABLE notifications;
