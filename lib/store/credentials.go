package store

import (
	"context"
	"time"
)

// APIKey is one of a user's API keys as its owner sees it: never the key,
// whose hash alone is stored.
type APIKey struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at,omitempty"`
}

const apiKeyColumns = `id, name, scopes, created_at, last_used_at, revoked_at`

func scanAPIKey(row interface{ Scan(...any) error }) (APIKey, error) {
	var k APIKey
	err := row.Scan(&k.ID, &k.Name, &k.Scopes, &k.CreatedAt, &k.LastUsedAt, &k.RevokedAt)
	return k, mapError(err)
}

// CreateAPIKey stores a key of userID by its hash; ErrUnknownUser when the
// user is gone.
func CreateAPIKey(ctx context.Context, q Querier, userID int64, name string, scopes []string, hash []byte) (APIKey, error) {
	return scanAPIKey(q.QueryRow(ctx,
		`INSERT INTO api_keys (user_id, name, scopes, key_hash) VALUES ($1, $2, $3, $4) RETURNING `+apiKeyColumns,
		userID, name, scopes, hash))
}

// ListAPIKeys lists userID's keys, revoked ones too, newest first.
func ListAPIKeys(ctx context.Context, q Querier, userID int64) ([]APIKey, error) {
	rows, err := q.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE user_id = $1 ORDER BY id DESC`, userID)
	if err != nil {
		return nil, mapError(err)
	}
	defer rows.Close()
	keys := []APIKey{}
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, mapError(rows.Err())
}

// RevokeAPIKey revokes userID's key id and returns its hash (to drop it
// from caches); revoking a revoked key again is no error. ErrNotFound when
// userID has no such key.
func RevokeAPIKey(ctx context.Context, q Querier, userID, id int64) ([]byte, error) {
	var hash []byte
	err := q.QueryRow(ctx, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
		WHERE id = $1 AND user_id = $2 RETURNING key_hash`, id, userID).Scan(&hash)
	return hash, mapError(err)
}

// KeyOwner is what a request made with an API key acts as.
type KeyOwner struct {
	KeyID  int64    `json:"key_id"`
	UserID int64    `json:"user_id"`
	Scopes []string `json:"scopes"`
}

// APIKeyByHash finds the live key with this hash; ErrNotFound when there
// is none or it is revoked.
func APIKeyByHash(ctx context.Context, q Querier, hash []byte) (KeyOwner, error) {
	var k KeyOwner
	err := q.QueryRow(ctx, `SELECT id, user_id, scopes FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL`, hash).
		Scan(&k.KeyID, &k.UserID, &k.Scopes)
	return k, mapError(err)
}

// TouchAPIKey records that key id was used, unless it was already within
// the last minute: a key used for every publish writes at most once a
// minute.
func TouchAPIKey(ctx context.Context, q Querier, id int64) error {
	_, err := q.Exec(ctx, `UPDATE api_keys SET last_used_at = now()
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`, id)
	return mapError(err)
}

// TokenRevocations is what revokes a user's access tokens: every token
// issued before NotBefore (zero: none) and the tokens whose jti is listed.
type TokenRevocations struct {
	NotBefore time.Time `json:"not_before"`
	JTIs      []string  `json:"jtis"`
}

// RevokedTokens reads userID's revocations still in force; ErrUnknownUser
// when the user is gone.
func RevokedTokens(ctx context.Context, q Querier, userID int64) (TokenRevocations, error) {
	var r TokenRevocations
	var notBefore *time.Time
	err := q.QueryRow(ctx, `SELECT u.tokens_not_before,
			coalesce((SELECT array_agg(jti ORDER BY jti) FROM revoked_tokens
				WHERE user_id = u.id AND expires_at > now()), '{}')
		FROM users u WHERE u.id = $1`, userID).Scan(&notBefore, &r.JTIs)
	if err := mapError(err); err == ErrNotFound {
		return r, ErrUnknownUser
	} else if err != nil {
		return r, err
	}
	if notBefore != nil {
		r.NotBefore = *notBefore
	}
	return r, nil
}

// RevokeToken revokes one token of userID until it expires, and sweeps
// the user's revocations of tokens that have expired anyway.
func RevokeToken(ctx context.Context, q Querier, userID int64, jti string, expires time.Time) error {
	_, err := q.Exec(ctx, `WITH swept AS (
			DELETE FROM revoked_tokens WHERE user_id = $1 AND expires_at <= now()
		)
		INSERT INTO revoked_tokens (jti, user_id, expires_at) VALUES ($2, $1, $3) ON CONFLICT (jti) DO NOTHING`,
		userID, jti, expires)
	return mapError(err)
}

// RevokeTokensBefore revokes every token of userID issued before t.
// ErrUnknownUser when the user is gone.
func RevokeTokensBefore(ctx context.Context, q Querier, userID int64, t time.Time) error {
	return ChangePassword(ctx, q, userID, "", t)
}

// ChangePassword sets userID's password hash (unless passwordHash is
// empty) and revokes every token of the user issued before t, in one
// statement. ErrUnknownUser when the user is gone.
func ChangePassword(ctx context.Context, q Querier, userID int64, passwordHash string, t time.Time) error {
	tag, err := q.Exec(ctx, `UPDATE users SET tokens_not_before = greatest(tokens_not_before, $2),
			password_hash = coalesce(nullif($3, ''), password_hash)
		WHERE id = $1`, userID, t, passwordHash)
	if err != nil {
		return mapError(err)
	}
	if tag.RowsAffected() == 0 {
		return ErrUnknownUser
	}
	return nil
}
