package store

import (
	"context"
	"time"
)

// User is an account. PasswordHash never leaves the server.
type User struct {
	ID           int64     `json:"id"`
	Email        string    `json:"email"`
	Name         string    `json:"name"`
	AvatarURL    string    `json:"avatar_url"`
	CreatedAt    time.Time `json:"created_at"`
	PasswordHash string    `json:"-"`
}

const userColumns = `id, email, name, avatar_url, created_at, password_hash`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Email, &u.Name, &u.AvatarURL, &u.CreatedAt, &u.PasswordHash)
	return u, mapError(err)
}

// CreateUser inserts a user; ErrConflict when the email (in any case) is taken.
func CreateUser(ctx context.Context, q Querier, email, name, passwordHash, avatarURL string) (User, error) {
	return scanUser(q.QueryRow(ctx,
		`INSERT INTO users (email, name, password_hash, avatar_url) VALUES ($1, $2, $3, $4) RETURNING `+userColumns,
		email, name, passwordHash, avatarURL))
}

// UserByEmail finds a user by email, ignoring case.
func UserByEmail(ctx context.Context, q Querier, email string) (User, error) {
	return scanUser(q.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE lower(email) = lower($1)`, email))
}

// UserByID finds a user by id.
func UserByID(ctx context.Context, q Querier, id int64) (User, error) {
	return scanUser(q.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
}

// RequireUser returns ErrUnknownUser unless user id exists.
func RequireUser(ctx context.Context, q Querier, id int64) error {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, id).Scan(&exists); err != nil {
		return mapError(err)
	}
	if !exists {
		return ErrUnknownUser
	}
	return nil
}
