package login

import (
	"context"
	"testing"
	"time"

	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

func setup(t *testing.T) (*testenv.DB, *auth.Tokens, store.User) {
	db := testenv.NewDB(t)
	hash, err := auth.HashPassword("analytical")
	if err != nil {
		t.Fatal(err)
	}
	u, err := store.CreateUser(context.Background(), db.Pool, "ada@example.com", "Ada", hash, "")
	if err != nil {
		t.Fatal(err)
	}
	return db, auth.NewTokens(testenv.JWTKey, time.Hour), u
}

func TestLoginIssuesATokenForTheRightPassword(t *testing.T) {
	db, tokens, ada := setup(t)
	status, body := testenv.Call(t, New(db.Pool, tokens, nil, config.Limits{}), "POST", `{"email":"ADA@example.com","password":"analytical"}`, "")
	if status != 200 {
		t.Fatalf("login: %d %s", status, body)
	}
	var out Response
	testenv.Decode(t, body, &out)
	if id, err := tokens.Verify(out.Token); err != nil || id != ada.ID || out.User.ID != ada.ID {
		t.Errorf("token for %d (%v), user %d; want %d", id, err, out.User.ID, ada.ID)
	}
	if !out.ExpiresAt.After(time.Now()) {
		t.Errorf("expires_at %v is not in the future", out.ExpiresAt)
	}
}

func TestLoginRejectsWrongPasswordAndUnknownEmailAlike(t *testing.T) {
	db, tokens, _ := setup(t)
	h := New(db.Pool, tokens, nil, config.Limits{})
	before := testenv.Snapshot(t, db.Pool)
	var bodies []string
	for _, body := range []string{
		`{"email":"ada@example.com","password":"wrong-password"}`,
		`{"email":"bob@example.com","password":"analytical"}`,
	} {
		status, out := testenv.Call(t, h, "POST", body, "")
		if status != 401 {
			t.Errorf("login %s: %d %s, want 401", body, status, out)
		}
		bodies = append(bodies, string(out))
	}
	if bodies[0] != bodies[1] {
		t.Errorf("wrong password and unknown email answer differently, revealing who has an account:\n%s\n%s", bodies[0], bodies[1])
	}
	for _, body := range []string{`{"email":"ada@example.com"}`, `not json`, `{"email":"a","password":"b","x":1}`} {
		if status, out := testenv.Call(t, h, "POST", body, ""); status != 400 {
			t.Errorf("login %s: %d %s, want 400", body, status, out)
		}
	}
	if after := testenv.Snapshot(t, db.Pool); after != before {
		t.Error("failed logins changed the database")
	}
}
