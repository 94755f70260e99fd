package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/auth"
	"tidings/lib/fn"
)

// JWTKey is the token key tests sign with.
var JWTKey = []byte("tidings-test-key-0123456789abcdef")

// Call runs h through the HTTP adapter as a client would reach it, and
// returns the status and body. token, when set, goes in as a Bearer token.
func Call(t testing.TB, h fn.Handler, method, body, token string) (int, []byte) {
	t.Helper()
	r := httptest.NewRequest(method, "/", strings.NewReader(body))
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	(&fn.Adapter{Handler: h}).ServeHTTP(w, r)
	return w.Code, w.Body.Bytes()
}

// Decode unmarshals a JSON body into v, failing t on error.
func Decode(t testing.TB, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}

// ErrorCode returns the error code of a contract error body, or "".
func ErrorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}

// Snapshot renders every row of every application table, so a test can
// prove a refused request changed nothing.
func Snapshot(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'goose%'`)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	var tables []string
	for rows.Next() {
		var name string
		_ = rows.Scan(&name)
		tables = append(tables, name)
	}
	rows.Close()
	sort.Strings(tables)
	var out bytes.Buffer
	for _, table := range tables {
		var dump *string
		q := fmt.Sprintf(`SELECT string_agg(x::text, E'\n' ORDER BY x::text) FROM %q x`, table)
		if err := pool.QueryRow(ctx, q).Scan(&dump); err != nil {
			t.Fatalf("snapshot %s: %v", table, err)
		}
		fmt.Fprintf(&out, "== %s\n", table)
		if dump != nil {
			out.WriteString(*dump + "\n")
		}
	}
	return out.String()
}

// User creates a user directly in the database and returns its id and a
// token for it, for tests of functions that need a signed-in caller.
func User(t testing.TB, pool *pgxpool.Pool, email string) (int64, string) {
	t.Helper()
	var id int64
	err := pool.QueryRow(context.Background(),
		`INSERT INTO users (email, name, password_hash) VALUES ($1, $1, 'not-a-hash') RETURNING id`, email).Scan(&id)
	if err != nil {
		t.Fatalf("create user %s: %v", email, err)
	}
	token, _, err := auth.NewTokens(JWTKey, time.Hour).Issue(id)
	if err != nil {
		t.Fatal(err)
	}
	return id, token
}
