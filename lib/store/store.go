// Package store owns PostgreSQL for tidings: the connection pools, the
// versioned migrations of its three databases (schema.go) and the queries
// on their tables.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Errors the queries map PostgreSQL failures to.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
	// ErrUnknownUser is a write on behalf of a user who does not exist
	// (any more): a foreign key to users refused it.
	ErrUnknownUser = errors.New("no such user")
)

// Connection settings every pool of tidings uses unless its URL sets its
// own (connect_timeout, pool_health_check_period). Without them a dial
// started while PostgreSQL is unreachable waits for the kernel to give up
// (minutes) and holds one of the pool's few slots all that time, and a
// dead idle connection is found only when a query hangs on it.
const (
	ConnectTimeout    = 3 * time.Second // the whole dial, TLS and startup
	HealthCheckPeriod = 5 * time.Second // how often idle connections are checked
	// TCP keepalive on every connection: a peer silent for KeepAliveIdle,
	// then unanswered for KeepAliveCount probes KeepAliveIdle apart, is dead.
	KeepAliveIdle  = 2 * time.Second
	KeepAliveCount = 3
)

// PoolConfig parses a PostgreSQL URL into a pool configuration with
// tidings's connection settings; every pool in the tree is built from it.
func PoolConfig(url string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = ConnectTimeout
	}
	if !strings.Contains(url, "pool_health_check_period") {
		cfg.HealthCheckPeriod = HealthCheckPeriod
	}
	dialer := &net.Dialer{
		Timeout: cfg.ConnConfig.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: KeepAliveIdle, Interval: KeepAliveIdle, Count: KeepAliveCount,
		},
	}
	cfg.ConnConfig.DialFunc = dialer.DialContext
	return cfg, nil
}

// NewPool returns a pool for url with PoolConfig's settings; it connects
// lazily, so PostgreSQL need not answer yet.
func NewPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := PoolConfig(url)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return pool, nil
}

// Open returns a pool for url (see NewPool), checked with a ping.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pool, err := NewPool(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping database: %w", err)
	}
	return pool, nil
}

// Querier is what the queries run on: a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Tx is what a participant's prepare writes through: queries and COPY, in
// one transaction (a pgx.Tx is one).
type Tx interface {
	Querier
	Copier
}

// Beginner is what runs a transaction: a pool or a connection.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Unreachable reports whether err is the database failing to answer
// rather than refusing a query: no connection could be made, the one in
// use was lost, or the server is shutting down or out of connections.
// What such a query did is not known when the connection was lost during
// a commit; a caller answers 503 and lets the client try again, which
// tidings's writes make safe.
func Unreachable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection_exception
			strings.HasPrefix(pgErr.Code, "53"),  // insufficient_resources (too many connections)
			strings.HasPrefix(pgErr.Code, "57P"): // admin_shutdown, crash_shutdown, cannot_connect_now
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err)
}

// mapError turns well-known PostgreSQL failures into this package's errors.
func mapError(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return fmt.Errorf("%w: %s", ErrConflict, pgErr.ConstraintName)
	}
	if errors.As(err, &pgErr) && pgErr.Code == "23503" { // foreign_key_violation
		if strings.HasSuffix(pgErr.ConstraintName, "user_id_fkey") || strings.HasSuffix(pgErr.ConstraintName, "owner_id_fkey") ||
			strings.HasSuffix(pgErr.ConstraintName, "sender_id_fkey") {
			return fmt.Errorf("%w: %s", ErrUnknownUser, pgErr.ConstraintName)
		}
		return fmt.Errorf("%w: %s", ErrNotFound, pgErr.ConstraintName)
	}
	return err
}
