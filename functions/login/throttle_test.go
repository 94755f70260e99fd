package login

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/ratelimit"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

// attempt logs in from address (sent as X-Forwarded-For, as gateway-ws
// sets it) and returns the status and the Retry-After header.
func attempt(t *testing.T, h *Handler, email, password, address string) (int, string) {
	t.Helper()
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{"email":"`+email+`","password":"`+password+`"}`))
	if address != "" {
		r.Header.Set("X-Forwarded-For", address)
	}
	w := httptest.NewRecorder()
	(&fn.Adapter{Handler: h}).ServeHTTP(w, r)
	if w.Code == http.StatusTooManyRequests && testenv.ErrorCode(w.Body.Bytes()) != "rate_limited" {
		t.Errorf("429 body %s, want the error shape with code rate_limited", w.Body)
	}
	return w.Code, w.Header().Get("Retry-After")
}

func addUser(t *testing.T, db *testenv.DB, email string) {
	t.Helper()
	hash, err := auth.HashPassword("analytical")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateUser(context.Background(), db.Pool, email, "someone", hash, ""); err != nil {
		t.Fatal(err)
	}
}

func TestLoginThrottlesAnAccountAfterTooManyWrongPasswords(t *testing.T) {
	db, tokens, _ := setup(t)
	addUser(t, db, "bob@example.com")
	r := testenv.NewRedis(t)
	// Three wrong passwords per 15 s: one comes back every 5 s, far more
	// than three attempts take.
	limits := config.Limits{LoginPerAccount: config.Rate{Count: 3, Per: 15 * time.Second}}
	h := New(db.Pool, tokens, ratelimit.New(r.Client, r.Prefix, time.Second, nil), limits)

	for i := range 3 {
		if status, _ := attempt(t, h, "ada@example.com", "wrong", "198.51.100.1"); status != 401 {
			t.Fatalf("wrong password %d of 3: %d, want 401", i+1, status)
		}
	}
	status, retry := attempt(t, h, "ada@example.com", "wrong", "198.51.100.2")
	seconds, err := strconv.Atoi(retry)
	if status != 429 || err != nil || seconds < 1 {
		t.Fatalf("wrong password past the threshold: %d Retry-After %q, want 429 and whole seconds", status, retry)
	}
	if status, retry := attempt(t, h, "ADA@example.com", "analytical", "198.51.100.3"); status != 429 || retry == "" {
		t.Fatalf("right password while the account is throttled: %d Retry-After %q, want 429 with Retry-After", status, retry)
	}
	if status, _ := attempt(t, h, "bob@example.com", "analytical", "198.51.100.1"); status != 200 {
		t.Fatalf("another account while ada's is throttled: %d, want 200", status)
	}
	if status, _ := attempt(t, h, "bob@example.com", "wrong", "198.51.100.1"); status != 401 {
		t.Fatalf("another account's wrong password: %d, want 401 (its own budget)", status)
	}

	// Once the window has passed (Retry-After, then bounded polling), the
	// right password works again.
	time.Sleep(time.Duration(seconds) * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _ := attempt(t, h, "ada@example.com", "analytical", "")
		if status == 200 {
			break
		}
		if status != 429 || time.Now().After(deadline) {
			t.Fatalf("right password after the window: %d, want 200 within 10 s past Retry-After", status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestLoginThrottlesAClientAddressAcrossAccounts(t *testing.T) {
	db, tokens, _ := setup(t)
	r := testenv.NewRedis(t)
	limits := config.Limits{LoginPerAddress: config.Rate{Count: 3, Per: 15 * time.Second}}
	h := New(db.Pool, tokens, ratelimit.New(r.Client, r.Prefix, time.Second, nil), limits)
	for _, email := range []string{"x1@example.com", "x2@example.com", "ada@example.com"} {
		if status, _ := attempt(t, h, email, "guess", "203.0.113.7"); status != 401 {
			t.Fatalf("wrong password for %s: %d, want 401", email, status)
		}
	}
	if status, retry := attempt(t, h, "ada@example.com", "analytical", "203.0.113.7"); status != 429 || retry == "" {
		t.Fatalf("from the throttled address: %d Retry-After %q, want 429 with Retry-After", status, retry)
	}
	if status, _ := attempt(t, h, "ada@example.com", "analytical", "203.0.113.8"); status != 200 {
		t.Fatalf("the same account from another address: %d, want 200", status)
	}
}

func TestLoginStaysOpenWhileRedisIsDown(t *testing.T) {
	db, tokens, _ := setup(t)
	limiter := ratelimit.New(testenv.DownRedis(t), "tidings-test:", 200*time.Millisecond, nil)
	limits := config.Limits{LoginPerAccount: config.Rate{Count: 1, Per: time.Hour}, LoginPerAddress: config.Rate{Count: 1, Per: time.Hour}}
	h := New(db.Pool, tokens, limiter, limits)
	for range 3 {
		if status, _ := attempt(t, h, "ada@example.com", "wrong", "198.51.100.1"); status != 401 {
			t.Fatalf("wrong password with Redis down: %d, want 401 (fail open)", status)
		}
	}
	if status, _ := attempt(t, h, "ada@example.com", "analytical", "198.51.100.1"); status != 200 {
		t.Fatalf("right password with Redis down: %d, want 200 (fail open)", status)
	}
	limits.LoginFailClosed = true
	closed := New(db.Pool, tokens, limiter, limits)
	if status, _ := attempt(t, closed, "ada@example.com", "analytical", "198.51.100.1"); status != 503 {
		t.Fatalf("LOGIN_LIMIT_FAIL_CLOSED with Redis down: %d, want 503", status)
	}
}
