-- +goose Up
-- Recovery asks each participant for the transactions it has held prepared
-- for long (notify-indoubt, counter-indoubt), to finish them even when their
-- Redis record is lost. Few rows are ever prepared, so a partial index keeps
-- that question cheap however many finished barriers accumulate.
CREATE INDEX tx_barriers_in_doubt_idx ON tx_barriers (participant, updated_at) WHERE state = 'prepared';

-- +goose Down
DROP INDEX tx_barriers_in_doubt_idx;
