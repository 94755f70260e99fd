package auth

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"tidings/lib/fn"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func TestTokenRoundTrip(t *testing.T) {
	tokens := NewTokens(key, time.Hour)
	tok, exp, err := tokens.Issue(42)
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(exp) <= 0 {
		t.Errorf("expiry %v is not in the future", exp)
	}
	id, err := tokens.Verify(tok)
	if err != nil || id != 42 {
		t.Fatalf("Verify = %d, %v; want 42", id, err)
	}
}

func TestVerifyRejectsForgedExpiredAndMalformedTokens(t *testing.T) {
	tokens := NewTokens(key, time.Hour)
	forged, _, _ := NewTokens([]byte("another-key-another-key-another!!"), time.Hour).Issue(42)
	past := NewTokens(key, time.Hour)
	past.now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	expired, _, _ := past.Issue(42)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.RegisteredClaims{
		Subject: "42", Issuer: issuer, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	noExpiry, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "42", Issuer: issuer}).SignedString(key)
	badSubject, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "ada", Issuer: issuer, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(key)
	for name, tok := range map[string]string{
		"forged": forged, "expired": expired, "alg none": none, "no expiry": noExpiry,
		"bad subject": badSubject, "garbage": "not.a.token", "empty": "",
	} {
		if id, err := tokens.Verify(tok); err == nil {
			t.Errorf("%s token accepted as user %d", name, id)
		}
	}
}

func TestPasswordsAreArgon2idHashes(t *testing.T) {
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$") || strings.Contains(h, "correct horse") {
		t.Fatalf("hash %q is not an argon2id PHC string", h)
	}
	if ok, _ := CheckPassword("correct horse", h); !ok {
		t.Error("right password refused")
	}
	if ok, _ := CheckPassword("wrong horse", h); ok {
		t.Error("wrong password accepted")
	}
	if h2, _ := HashPassword("correct horse"); h2 == h {
		t.Error("two hashes of one password are equal: salt is missing")
	}
}

func TestRequireInternalRefusesCallsWithoutTheKey(t *testing.T) {
	inner := fn.HandlerFunc(func(fn.Request) (fn.Response, error) { return fn.Response{StatusCode: 200}, nil })
	h := RequireInternal("s3cret", inner)
	for key, want := range map[string]int{"": 401, "wrong": 401, "s3cret": 200} {
		resp, err := h.Handle(fn.Request{Header: http.Header{InternalKeyHeader: {key}}})
		got := resp.StatusCode
		if e := fn.AsError(err); e != nil {
			got = e.Status
		}
		if got != want {
			t.Errorf("internal key %q: %d, want %d", key, got, want)
		}
	}
	if _, err := RequireInternal("", inner).Handle(fn.Request{Header: http.Header{}}); fn.AsError(err) == nil {
		t.Error("an unset internal key must refuse every call, not accept an empty header")
	}
}

// Caller reads the request's token through Bearer: both take only a
// well-formed Bearer token and answer 401 for anything else.
func TestCallerAndBearerTakeOnlyABearerToken(t *testing.T) {
	tokens := NewTokens(key, time.Hour)
	good, _, _ := tokens.Issue(7)
	for header, want := range map[string]int64{
		"":                     0,
		"Bearer ":              0,
		"Bearer    ":           0,
		"Basic abc":            0,
		"Basic " + good:        0,
		"bearer-ish " + good:   0,
		"Bearer nonsense":      0,
		"Bearer " + good:       7,
		"Bearer " + good + " ": 7,
	} {
		h := http.Header{"Authorization": {header}}
		id, err := tokens.Bearer(h)
		callerID, callerErr := tokens.Caller(fn.Request{Header: h})
		for name, got := range map[string]struct {
			id  int64
			err error
		}{"Bearer": {id, err}, "Caller": {callerID, callerErr}} {
			if got.id != want {
				t.Errorf("%s, Authorization %q: user %d, want %d", name, header, got.id, want)
			}
			if e := fn.AsError(got.err); (want == 0) != (e != nil && e.Status == http.StatusUnauthorized) {
				t.Errorf("%s, Authorization %q: error %v, want a 401 exactly when there is no user", name, header, got.err)
			}
		}
	}
	if id, err := tokens.Bearer(http.Header{}); id != 0 || fn.AsError(err) == nil {
		t.Errorf("no Authorization header: %d, %v; want a 401", id, err)
	}
}
