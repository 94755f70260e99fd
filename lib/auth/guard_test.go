package auth_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/testenv"
)

func status(err error) int {
	if err == nil {
		return http.StatusOK
	}
	if e := fn.AsError(err); e != nil {
		return e.Status
	}
	return http.StatusInternalServerError
}

// The fault: the directory's pool is closed after a first good check.
// For AUTH_CHECK_GRACE the token is still answered from the last answer;
// then the check fails closed with 503. A token never checked before is
// 503 at once.
func TestGuardAnswersFromTheLastAnswerWithinGraceThenFailsClosed(t *testing.T) {
	db := testenv.NewDB(t)
	pool, err := pgxpool.New(context.Background(), db.URL)
	if err != nil {
		t.Fatal(err)
	}
	guard, err := auth.NewGuard(pool, nil, auth.GuardConfig{Grace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = guard.Close() })
	tokens := auth.NewTokens(testenv.JWTKey, time.Hour).WithGuard(guard)
	seen, _ := testenv.User(t, db.Pool, "seen@example.test")
	unseen, _ := testenv.User(t, db.Pool, "unseen@example.test")
	tok := func(id int64) http.Header {
		s, _, _ := tokens.Issue(id)
		return http.Header{"Authorization": {"Bearer " + s}}
	}
	seenToken := tok(seen)
	if _, err := tokens.Bearer(seenToken); err != nil {
		t.Fatalf("first check: %v", err)
	}
	pool.Close()
	if _, err := tokens.Bearer(seenToken); err != nil {
		t.Fatalf("within the grace after the directory went away: %v, want the last answer (accepted)", err)
	}
	if got := status(func() error { _, err := tokens.Bearer(tok(unseen)); return err }()); got != http.StatusServiceUnavailable {
		t.Errorf("a user never checked, directory away: %d, want 503", got)
	}
	testenv.Eventually(t, "the check fails closed past the grace", 50, func() bool {
		_, err := tokens.Bearer(seenToken)
		if status(err) == http.StatusServiceUnavailable {
			return true
		}
		time.Sleep(100 * time.Millisecond)
		return false
	})
}

// Without a cache, a revocation is seen by the next check; an API key
// without a scope for the function is 403, an unknown one 401.
func TestGuardRefusesRevokedTokensAndChecksKeyScopes(t *testing.T) {
	db := testenv.NewDB(t)
	guard, err := auth.NewGuard(db.Pool, nil, auth.GuardConfig{})
	if err != nil {
		t.Fatal(err)
	}
	tokens := auth.NewTokens(testenv.JWTKey, time.Hour).WithGuard(guard)
	user, _ := testenv.User(t, db.Pool, "ada@example.test")
	a, _, _ := tokens.Issue(user)
	b, _, _ := tokens.Issue(user)
	claims, err := tokens.Parse(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := guard.RevokeToken(context.Background(), claims); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		tok  string
		want int
	}{"revoked": {a, 401}, "other": {b, 200}} {
		_, err := tokens.Bearer(http.Header{"Authorization": {"Bearer " + c.tok}})
		if got := status(err); got != c.want {
			t.Errorf("%s token: %d, want %d", name, got, c.want)
		}
	}
	key, hash := auth.NewAPIKey()
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO api_keys (user_id, name, scopes, key_hash) VALUES ($1, 'k', '{read}', $2)`, user, hash); err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Authorization": {"Bearer " + key}}
	for scope, want := range map[string]int{"read": 200, "publish": 403, "": 403} {
		id, err := tokens.For(scope).Bearer(h)
		if got := status(err); got != want || (want == 200 && id != user) {
			t.Errorf("key with scope read, function taking %q: %d user %d, want %d", scope, got, id, want)
		}
	}
	if _, err := tokens.For("read").Bearer(http.Header{"Authorization": {"Bearer tdk_unknown"}}); status(err) != 401 {
		t.Errorf("unknown key: %v, want 401", err)
	}
}
