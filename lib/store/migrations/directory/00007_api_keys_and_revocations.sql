-- +goose Up
-- API keys: a user's credentials for their app's backend. Only the
-- SHA-256 of the key is kept (a key is 32 random bytes, so a fast hash is
-- enough: there is nothing to guess); the key itself is shown once, when
-- it is created. A revoked key keeps its row (revoked_at) so its owner's
-- listing still shows it.
CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    scopes       text[]      NOT NULL,
    key_hash     bytea       NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id);

-- Access tokens revoked one by one (logout), by their jti, until they
-- expire anyway: rows past expires_at are swept by the next logout.
CREATE TABLE revoked_tokens (
    jti        text        PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX revoked_tokens_user_idx ON revoked_tokens (user_id, expires_at);

-- Every token of the user issued before this instant is revoked
-- (logout-all, change-password).
ALTER TABLE users ADD COLUMN tokens_not_before timestamptz;

-- +goose Down
ALTER TABLE users DROP COLUMN tokens_not_before;
DROP TABLE revoked_tokens;
DROP TABLE api_keys;
