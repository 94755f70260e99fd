package auth

import (
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/alexedwards/argon2id"

	"tidings/lib/fn"
)

// Password bounds: long enough to matter, short enough that hashing cannot
// be used to burn the server's CPU.
const (
	MinPassword = 8
	MaxPassword = 128
)

// CheckNewPassword refuses (400) a password a user may not choose
// (register, change-password).
func CheckNewPassword(field, password string) error {
	if n := utf8.RuneCountInString(password); n < MinPassword || n > MaxPassword {
		return fn.BadRequest("%s must be %d to %d characters", field, MinPassword, MaxPassword)
	}
	return nil
}

// passwordParams follow OWASP's argon2id baseline (19 MiB, 2 passes).
var passwordParams = &argon2id.Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// HashPassword returns the argon2id hash of password in PHC string form.
func HashPassword(password string) (string, error) {
	h, err := argon2id.CreateHash(password, passwordParams)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return h, nil
}

// CheckPassword reports whether password matches hash.
func CheckPassword(password, hash string) (bool, error) {
	ok, err := argon2id.ComparePasswordAndHash(password, hash)
	if err != nil {
		return false, fmt.Errorf("compare password: %w", err)
	}
	return ok, nil
}

// dummyHash lets a login for an unknown email cost as much as one for a
// known email, so response time does not reveal which emails exist.
// It is made on first use, not at start-up.
var dummyHash = sync.OnceValue(func() string {
	h, _ := HashPassword("tidings-dummy-password")
	return h
})

// BurnPasswordCheck does the work of one password check against nothing.
func BurnPasswordCheck(password string) { _, _ = CheckPassword(password, dummyHash()) }
