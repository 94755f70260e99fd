-- +goose Up
-- One row per transaction and participant: what the participant did with
-- the transaction, so commit and rollback are idempotent and a prepare
-- that arrives after its rollback is refused.
CREATE TABLE tx_barriers (
    tx_id       text        NOT NULL,
    participant text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('prepared', 'committed', 'rolled_back')),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tx_id, participant)
);

-- The persist participant. A prepared notification is invisible to readers.
CREATE TABLE notifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id      text        NOT NULL UNIQUE,
    topic_id   bigint      NOT NULL REFERENCES topics (id) ON DELETE CASCADE,
    sender_id  bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      text        NOT NULL,
    body       text        NOT NULL DEFAULT '',
    email      boolean     NOT NULL DEFAULT false,
    state      text        NOT NULL CHECK (state IN ('prepared', 'committed')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Who a notification went to, fixed by the coordinator at publish time.
CREATE TABLE deliveries (
    notification_id bigint      NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    user_id         bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    acked_at        timestamptz,
    PRIMARY KEY (notification_id, user_id)
);
CREATE INDEX deliveries_user_idx ON deliveries (user_id, notification_id DESC);

-- The counter participant: increments wait here until commit.
CREATE TABLE pending_increments (
    tx_id   text   NOT NULL,
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (tx_id, user_id)
);

CREATE TABLE counters (
    user_id bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    unread  bigint NOT NULL DEFAULT 0 CHECK (unread >= 0)
);

-- +goose Down
DROP TABLE counters;
DROP TABLE pending_increments;
DROP TABLE deliveries;
DROP TABLE notifications;
DROP TABLE tx_barriers;
