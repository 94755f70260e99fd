-- +goose Up
-- (Version 5, not 4: a database from before the participants' split
-- recorded its 00004_barrier_in_doubt in the directory's version table.)
-- The recipients of each transaction in flight, fixed by the coordinator
-- in one statement when it publishes, so that both participants read the
-- same set (however subscriptions change meanwhile) without the ids
-- travelling in any call body or Redis record. One row per transaction,
-- the ids as one sorted array: writing and deleting a set of 100,000 is
-- one row (TOASTed, compressed), not 100,000 index entries. The
-- coordinator deletes a set once its transaction is finished and
-- delivered; recovery sweeps the sets of transactions that finished
-- without it (see docs/architecture.md, "Two-phase commit").
CREATE TABLE recipient_sets (
    tx_id      text        PRIMARY KEY,
    topic_id   bigint      NOT NULL,
    recipients bigint[]    NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recipient_sets_created_idx ON recipient_sets (created_at);

-- +goose Down
DROP TABLE recipient_sets;
