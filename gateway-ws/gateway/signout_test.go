package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"tidings/lib/catalog"
	"tidings/lib/testenv"
)

// A publish-scoped key publishes on its owner's topics, through any
// replica, and nowhere else: another's topic is 403, manage and read
// operations are 403, a socket is 403. The table holds only the key's
// hash. Revoked through replica A, it is 401 on replica B within seconds.
func TestPublishKeyActsAsItsOwnerWithinItsScopeUntilRevoked(t *testing.T) {
	s := startCredentialStack(t)
	ownTopic, owner, subs := testenv.Topic(t, s.db.Pool, 1)
	otherTopic, _, _ := testenv.Topic(t, s.db.Pool, 0)
	sub := dial(t, s.b, subs[0])
	sub.mustJoin(fmt.Sprintf("user:%d", subs[0]))

	status, body := s.a.fn(t, "create-api-key", token(t, owner), `{"name":"shop backend","scopes":["publish"]}`)
	var created struct {
		APIKey struct {
			ID         int64      `json:"id"`
			Name       string     `json:"name"`
			Scopes     []string   `json:"scopes"`
			LastUsedAt *time.Time `json:"last_used_at"`
		} `json:"api_key"`
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(body), &created); status != http.StatusCreated || err != nil ||
		!strings.HasPrefix(created.Key, "tdk_") || created.APIKey.Name != "shop backend" || fmt.Sprint(created.APIKey.Scopes) != "[publish]" {
		t.Fatalf("create-api-key: %d %s, want 201 {api_key, key: tdk_...}", status, body)
	}
	key := created.Key

	// Stored only as its hash: no column of the row holds the key.
	var hash []byte
	var row string
	if err := s.db.Pool.QueryRow(context.Background(), `SELECT key_hash, a::text FROM api_keys a WHERE id = $1`, created.APIKey.ID).Scan(&hash, &row); err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256([]byte(key)); !bytes.Equal(hash, sum[:]) || strings.Contains(row, key) || strings.Contains(row, strings.TrimPrefix(key, "tdk_")) {
		t.Fatalf("api_keys row %s: want the key's SHA-256 and not the key", row)
	}

	if status, body := s.a.publish(t, ownTopic, key); status != http.StatusCreated {
		t.Fatalf("publish with the key on its owner's topic through A: %d %s, want 201", status, body)
	}
	if _, m := sub.read(); m.Event != "notification" {
		t.Fatalf("the subscriber got %v, want the key's notification", m)
	}
	if status, body := s.b.publish(t, ownTopic, key); status != http.StatusCreated {
		t.Fatalf("publish with the key through B: %d %s, want 201", status, body)
	}
	if status, body := s.b.publish(t, otherTopic, key); status != http.StatusForbidden || !strings.Contains(body, `"error"`) {
		t.Errorf("publish with the key on another's topic: %d %s, want 403 in the error shape", status, body)
	}
	for _, name := range []string{"create-topic", "list-topics", "list-notifications", "get-counter", "create-api-key", "list-api-keys", "logout", "subscribe"} {
		if status, body := s.a.fn(t, name, key, `{"name":"x","topic_id":1,"scopes":["publish"]}`); status != http.StatusForbidden || !strings.Contains(body, `"code":"forbidden"`) {
			t.Errorf("%s with a publish key: %d %s, want 403 forbidden", name, status, body)
		}
	}
	if got := dialStatus(t, s.a.socketURL(key), nil); got != http.StatusForbidden {
		t.Errorf("socket with an API key: %d, want 403", got)
	}

	if status, body := s.a.fn(t, "revoke-api-key", token(t, owner), fmt.Sprintf(`{"id":%d}`, created.APIKey.ID)); status != http.StatusOK {
		t.Fatalf("revoke-api-key through A: %d %s", status, body)
	}
	testenv.Eventually(t, "the revoked key is refused by replica B", 100, func() bool {
		status, _ := s.b.publish(t, ownTopic, key)
		if status == http.StatusUnauthorized {
			return true
		}
		time.Sleep(50 * time.Millisecond)
		return false
	})
	if status, body := s.a.publish(t, ownTopic, key); status != http.StatusUnauthorized {
		t.Errorf("the revoked key through A: %d %s, want 401", status, body)
	}

	status, body = s.b.fn(t, "list-api-keys", token(t, owner), "")
	var listed struct {
		APIKeys []map[string]any `json:"api_keys"`
	}
	if err := json.Unmarshal([]byte(body), &listed); status != http.StatusOK || err != nil || len(listed.APIKeys) != 1 {
		t.Fatalf("list-api-keys: %d %s, want the one key", status, body)
	}
	if k := listed.APIKeys[0]; k["last_used_at"] == nil || k["revoked_at"] == nil || k["key"] != nil || strings.Contains(body, key) {
		t.Errorf("listed key %v: want last_used_at and revoked_at set and never the key", k)
	}
	if status, _ := s.a.fn(t, "revoke-api-key", token(t, subs[0]), fmt.Sprintf(`{"id":%d}`, created.APIKey.ID)); status != http.StatusNotFound {
		t.Errorf("revoking another user's key: %d, want 404", status)
	}
}

// A manage key creates topics and lists them; a read key lists the
// owner's notifications; neither publishes.
func TestManageAndReadKeysReachOnlyTheirFunctions(t *testing.T) {
	s := startCredentialStack(t)
	ownTopic, owner, _ := testenv.Topic(t, s.db.Pool, 0)
	keys := map[string]string{}
	for _, scope := range []string{"manage", "read"} {
		status, body := s.a.fn(t, "create-api-key", token(t, owner), fmt.Sprintf(`{"name":%q,"scopes":[%q]}`, scope, scope))
		var created struct {
			Key string `json:"key"`
		}
		if err := json.Unmarshal([]byte(body), &created); status != http.StatusCreated || err != nil {
			t.Fatalf("create %s key: %d %s", scope, status, body)
		}
		keys[scope] = created.Key
	}
	for _, c := range []struct {
		scope, function string
		want            int
	}{
		{"manage", "create-topic", http.StatusCreated},
		{"manage", "list-topics", http.StatusOK},
		{"manage", "list-notifications", http.StatusForbidden},
		{"read", "list-notifications", http.StatusOK},
		{"read", "get-counter", http.StatusOK},
		{"read", "create-topic", http.StatusForbidden},
	} {
		if status, body := s.b.fn(t, c.function, keys[c.scope], `{"name":"made by a key"}`); status != c.want {
			t.Errorf("%s with a %s key: %d %s, want %d", c.function, c.scope, status, body, c.want)
		}
	}
	for scope, key := range keys {
		if status, _ := s.a.publish(t, ownTopic, key); status != http.StatusForbidden {
			t.Errorf("publish with a %s key: %d, want 403", scope, status)
		}
	}
	if status, body := s.a.fn(t, "create-api-key", token(t, owner), `{"name":"x","scopes":["admin"]}`); status != http.StatusBadRequest {
		t.Errorf("create-api-key with an unknown scope: %d %s, want 400", status, body)
	}
	var n int
	_ = s.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM api_keys`).Scan(&n)
	if n != 2 {
		t.Errorf("%d keys stored, want the 2 valid ones (a refused request stores nothing)", n)
	}
}

// After logout the token is 401 on every function that takes one and on
// the publish endpoint, its sockets on both replicas are closed with
// CloseTokenRevoked, and a reconnect is refused; the user's other token
// and its socket go on.
func TestLogoutClosesTheTokensSocketsAndEveryFunctionRefusesIt(t *testing.T) {
	s := startCredentialStack(t)
	topicID, user, _ := testenv.Topic(t, s.db.Pool, 0)
	out, other := token(t, user), token(t, user)
	onA, onB, otherOnA := dialToken(t, s.a, out), dialToken(t, s.b, out), dialToken(t, s.a, other)
	userTopic := fmt.Sprintf("user:%d", user)
	onA.mustJoin(userTopic)
	onB.mustJoin(userTopic)
	otherOnA.mustJoin(userTopic)

	if status, body := s.b.fn(t, "logout", out, "{}"); status != http.StatusOK {
		t.Fatalf("logout through B: %d %s", status, body)
	}
	for name, c := range map[string]*client{"replica A": onA, "replica B": onB} {
		if ce := c.expectClose(5); ce.Code != CloseTokenRevoked || ce.Text != "token revoked" {
			t.Errorf("the signed-out socket on %s closed with %d %q, want %d \"token revoked\"", name, ce.Code, ce.Text, CloseTokenRevoked)
		}
	}
	otherOnA.heartbeat()

	for _, name := range catalog.Public() {
		if name == "gen-avatar" || name == "login" || name == "register" {
			continue // they take no token
		}
		if status, body := s.a.fn(t, name, out, `{}`); status != http.StatusUnauthorized {
			t.Errorf("%s with a signed-out token: %d %s, want 401", name, status, body)
		}
	}
	if status, _ := s.b.publish(t, topicID, out); status != http.StatusUnauthorized {
		t.Errorf("publish with a signed-out token: %d, want 401", status)
	}
	if got := dialStatus(t, s.a.socketURL(out), nil); got != http.StatusForbidden {
		t.Errorf("socket with a signed-out token: %d, want 403", got)
	}
	if status, body := s.a.fn(t, "list-topics", other, ""); status != http.StatusOK {
		t.Errorf("the user's other token: %d %s, want 200", status, body)
	}
}

// logout-all revokes every token issued before it (its own too) and not
// one issued after; change-password revokes every older token, answers a
// new one that works, and the new password is the one login takes.
func TestLogoutAllAndChangePasswordRevokeOlderTokensNotTheNewOne(t *testing.T) {
	s := startCredentialStack(t)
	login := func(password string) (int, string) {
		status, body := s.a.fn(t, "login", "", fmt.Sprintf(`{"email":"ada@example.test","password":%q}`, password))
		var out struct {
			Token string `json:"token"`
		}
		_ = json.Unmarshal([]byte(body), &out)
		return status, out.Token
	}
	works := func(tok string) int {
		status, _ := s.b.fn(t, "list-topics", tok, "")
		return status
	}
	status, body := s.a.fn(t, "register", "", `{"email":"ada@example.test","password":"first password","name":"Ada"}`)
	var reg struct {
		Token string `json:"token"`
		User  struct {
			ID int64 `json:"id"`
		} `json:"user"`
	}
	if err := json.Unmarshal([]byte(body), &reg); status != http.StatusCreated || err != nil {
		t.Fatalf("register: %d %s", status, body)
	}
	_, first := login("first password")
	sock := dialToken(t, s.b, first)
	sock.mustJoin(fmt.Sprintf("user:%d", reg.User.ID))

	if status, body := s.a.fn(t, "logout-all", first, "{}"); status != http.StatusOK {
		t.Fatalf("logout-all: %d %s", status, body)
	}
	if ce := sock.expectClose(5); ce.Code != CloseTokenRevoked {
		t.Errorf("socket of a token older than logout-all closed with %d %q, want %d", ce.Code, ce.Text, CloseTokenRevoked)
	}
	for name, tok := range map[string]string{"register's": reg.Token, "login's": first} {
		if got := works(tok); got != http.StatusUnauthorized {
			t.Errorf("%s token after logout-all: %d, want 401", name, got)
		}
	}
	_, second := login("first password")
	if got := works(second); got != http.StatusOK {
		t.Fatalf("a token issued after logout-all: %d, want 200", got)
	}

	if status, body := s.a.fn(t, "change-password", second, `{"current_password":"wrong password","new_password":"second password"}`); status != http.StatusForbidden {
		t.Errorf("change-password with a wrong current password: %d %s, want 403", status, body)
	}
	status, body = s.a.fn(t, "change-password", second, `{"current_password":"first password","new_password":"second password"}`)
	var changed struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(body), &changed); status != http.StatusOK || err != nil || changed.Token == "" {
		t.Fatalf("change-password: %d %s, want 200 with a token", status, body)
	}
	if got := works(second); got != http.StatusUnauthorized {
		t.Errorf("the token older than change-password: %d, want 401", got)
	}
	if got := works(changed.Token); got != http.StatusOK {
		t.Errorf("change-password's new token: %d, want 200", got)
	}
	if status, _ := login("first password"); status != http.StatusUnauthorized {
		t.Errorf("login with the old password: %d, want 401", status)
	}
	if status, tok := login("second password"); status != http.StatusOK || works(tok) != http.StatusOK {
		t.Errorf("login with the new password: %d, want 200 and a working token", status)
	}
}
