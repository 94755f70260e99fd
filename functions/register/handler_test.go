package register

import (
	"context"
	"strings"
	"testing"
	"time"

	"tidings/lib/auth"
	"tidings/lib/testenv"
)

func TestRegisterCreatesAUserAndSignsThemIn(t *testing.T) {
	db := testenv.NewDB(t)
	tokens := auth.NewTokens(testenv.JWTKey, time.Hour)
	h := New(db.Pool, tokens)

	status, body := testenv.Call(t, h, "POST", `{"email":" Ada@Example.com ","password":"analytical engine","name":" Ada "}`, "")
	if status != 201 {
		t.Fatalf("register: %d %s, want 201", status, body)
	}
	var out Response
	testenv.Decode(t, body, &out)
	if out.User.ID == 0 || out.User.Email != "Ada@Example.com" || out.User.Name != "Ada" {
		t.Errorf("user = %+v, want id, trimmed email and name", out.User)
	}
	if out.User.AvatarURL != AvatarURL("ada@example.com") || !strings.HasPrefix(out.User.AvatarURL, "/function/gen-avatar?seed=") ||
		strings.Contains(out.User.AvatarURL, "example") {
		t.Errorf("avatar_url %q: want gen-avatar seeded by the email's hash, not the email", out.User.AvatarURL)
	}
	if id, err := tokens.Verify(out.Token); err != nil || id != out.User.ID {
		t.Errorf("token names user %d (%v), want %d", id, err, out.User.ID)
	}
	if strings.Contains(string(body), "password") || strings.Contains(string(body), "argon2") {
		t.Errorf("the answer reveals the password or its hash: %s", body)
	}
	var stored string
	if err := db.Pool.QueryRow(context.Background(), `SELECT password_hash FROM users WHERE id = $1`, out.User.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored, "$argon2id$") || strings.Contains(stored, "analytical engine") {
		t.Errorf("stored password %q is not an argon2id hash", stored)
	}
}

func TestRegisterRefusesBadInputAndChangesNothing(t *testing.T) {
	db := testenv.NewDB(t)
	h := New(db.Pool, auth.NewTokens(testenv.JWTKey, time.Hour))
	if s, b := testenv.Call(t, h, "POST", `{"email":"ada@example.com","password":"analytical","name":"Ada"}`, ""); s != 201 {
		t.Fatalf("first registration: %d %s", s, b)
	}
	before := testenv.Snapshot(t, db.Pool)
	cases := []struct {
		name, method, body string
		status             int
		code               string
	}{
		{"email taken, other case", "POST", `{"email":"ADA@example.COM","password":"analytical","name":"Ada"}`, 409, "conflict"},
		{"malformed JSON", "POST", `{"email":"x@example.com",`, 400, "bad_request"},
		{"unknown field", "POST", `{"email":"x@example.com","password":"analytical","name":"X","admin":true}`, 400, "bad_request"},
		{"not an email", "POST", `{"email":"nope","password":"analytical","name":"X"}`, 400, "bad_request"},
		{"email with a display name", "POST", `{"email":"X <x@example.com>","password":"analytical","name":"X"}`, 400, "bad_request"},
		{"short password", "POST", `{"email":"x@example.com","password":"short","name":"X"}`, 400, "bad_request"},
		{"long password", "POST", `{"email":"x@example.com","password":"` + strings.Repeat("p", auth.MaxPassword+1) + `","name":"X"}`, 400, "bad_request"},
		{"blank name", "POST", `{"email":"x@example.com","password":"analytical","name":"  "}`, 400, "bad_request"},
		{"empty body", "POST", ``, 400, "bad_request"},
		{"wrong method", "GET", ``, 405, "method_not_allowed"},
	}
	for _, c := range cases {
		status, body := testenv.Call(t, h, c.method, c.body, "")
		if status != c.status || testenv.ErrorCode(body) != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, body, c.status, c.code)
		}
	}
	if after := testenv.Snapshot(t, db.Pool); after != before {
		t.Errorf("refused registrations changed the database:\nbefore %s\nafter %s", before, after)
	}
}
