package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"tidings/lib/cache"
	"tidings/lib/fn"
	"tidings/lib/store"
)

// APIKeyPrefix starts every API key, so that a key is told from a token
// by its look (and found by secret scanners).
const APIKeyPrefix = "tdk_"

// IsAPIKey reports whether a Bearer credential is an API key.
func IsAPIKey(credential string) bool { return strings.HasPrefix(credential, APIKeyPrefix) }

// NewAPIKey returns a new key and the hash it is stored by. The key is 256
// random bits, so one SHA-256 of it is as hard to reverse as the key is
// to guess: no slow password hash is needed, and a check costs one hash.
func NewAPIKey() (key string, hash []byte) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	key = APIKeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	return key, HashAPIKey(key)
}

// HashAPIKey is what a key is stored and looked up by.
func HashAPIKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// GuardConfig tunes a Guard. Zero fields take the defaults documented
// beside them.
type GuardConfig struct {
	// Grace is how long a process keeps answering a credential check from
	// the last answer it had when neither the cache nor the directory
	// database can answer now; past it the check fails closed (503).
	// Default 10s (env AUTH_CHECK_GRACE, lib/config).
	Grace time.Duration
	// CheckTimeout bounds one check's wait for the cache and the
	// database. Default 2s.
	CheckTimeout time.Duration
	// Logger; nil: no logs.
	Logger *slog.Logger
}

// Guard knows which tokens are revoked and which API keys are live: the
// state behind Tokens' Caller and Bearer. It reads the directory through
// the shared cache (one entry per user's revocations and per key), and
// every revocation deletes the entry, which drops it from every process's
// memory within the cache's invalidation delay (lib/cache, the near
// store); gateway-ws hears the same deletion (OnRevoke) and closes the
// revoked sockets.
type Guard struct {
	db          store.Querier
	revocations *cache.Typed[store.TokenRevocations] // by user id; nil: no cache
	keys        *cache.Typed[store.KeyOwner]         // by hex of the key's hash; nil: no cache
	lastGood    *cache.Cache                         // this process's last answers, kept Grace
	lastRevs    *cache.Typed[store.TokenRevocations]
	lastKeys    *cache.Typed[store.KeyOwner]
	cfg         GuardConfig

	mu      sync.Mutex
	touched map[int64]time.Time // when this process last wrote a key's last_used_at
}

// Cache namespaces of the Guard's entries.
const (
	revocationsNS = "auth-revoked"
	keysNS        = "auth-key"
)

// touchEvery is how often a process records a key's use (last_used_at).
const touchEvery = time.Minute

// NewGuard returns a Guard reading db (the directory) through c; a nil c
// reads db on every check.
func NewGuard(db store.Querier, c *cache.Cache, cfg GuardConfig) (*Guard, error) {
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	if cfg.CheckTimeout <= 0 {
		cfg.CheckTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	last, err := cache.New(cache.Config{Store: cache.Memory, TTL: cfg.Grace, MaxEntries: 100_000}, nil)
	if err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	g := &Guard{db: db, cfg: cfg, lastGood: last, touched: map[int64]time.Time{},
		lastRevs: cache.Of[store.TokenRevocations](last, revocationsNS), lastKeys: cache.Of[store.KeyOwner](last, keysNS)}
	if c != nil {
		g.revocations = cache.Of[store.TokenRevocations](c, revocationsNS)
		g.keys = cache.Of[store.KeyOwner](c, keysNS)
	}
	return g, nil
}

// Close releases the guard's process memory.
func (g *Guard) Close() error { return g.lastGood.Close() }

// errUnchecked is the fail-closed answer: the credential may be fine, but
// whether it is revoked cannot be told now.
func errUnchecked() *fn.Error {
	return fn.Unavailable("the credential cannot be checked now; retry shortly")
}

// load reads one entry through the shared cache (when there is one),
// falling back to this process's last answer within Grace.
func load[V any](ctx context.Context, g *Guard, shared, last *cache.Typed[V], k string, fromDB func(context.Context) (V, error)) (V, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.CheckTimeout)
	defer cancel()
	var v V
	var err error
	if shared != nil {
		v, err = shared.GetOrLoad(ctx, k, 0, fromDB)
	} else {
		v, err = fromDB(ctx)
	}
	if err == nil {
		_ = last.Set(ctx, k, v, g.cfg.Grace) // process memory: cannot fail
		return v, nil
	}
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrUnknownUser) {
		_ = last.Delete(ctx, k)
		return v, err
	}
	if v, ok, _ := last.Get(ctx, k); ok {
		g.cfg.Logger.Warn("credential checked against the last answer: the cache and the directory do not answer", "entry", k, "err", err)
		return v, nil
	}
	g.cfg.Logger.Warn("credential refused: it cannot be checked", "entry", k, "err", err)
	return v, errUnchecked()
}

// checkToken refuses a token that is revoked (401), or whose user is gone.
func (g *Guard) checkToken(ctx context.Context, c Claims) error {
	k := strconv.FormatInt(c.UserID, 10)
	r, err := load(ctx, g, g.revocations, g.lastRevs, k, func(ctx context.Context) (store.TokenRevocations, error) {
		return store.RevokedTokens(ctx, g.db, c.UserID)
	})
	switch {
	case errors.Is(err, store.ErrUnknownUser):
		return ErrUserGone()
	case err != nil:
		return err
	case revokes(r, c):
		return fn.Unauthorized("the token was revoked (signed out)")
	}
	return nil
}

// revokes reports whether r revokes the token of c.
func revokes(r store.TokenRevocations, c Claims) bool {
	return c.IssuedAt.Before(r.NotBefore) || slices.Contains(r.JTIs, c.JTI)
}

// keyCaller returns the owner of a live API key holding scope.
func (g *Guard) keyCaller(ctx context.Context, key, scope string) (int64, error) {
	hash := HashAPIKey(key)
	k := hex.EncodeToString(hash)
	owner, err := load(ctx, g, g.keys, g.lastKeys, k, func(ctx context.Context) (store.KeyOwner, error) {
		return store.APIKeyByHash(ctx, g.db, hash)
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return 0, fn.Unauthorized("invalid or revoked API key")
	case err != nil:
		return 0, err
	case scope == "":
		return 0, errKeyNotHere
	case !slices.Contains(owner.Scopes, scope):
		return 0, fn.Forbidden("this API key lacks the %q scope", scope)
	}
	g.touch(ctx, owner.KeyID)
	return owner.UserID, nil
}

// touch records a key's use at most every touchEvery per process; a
// failure costs only the timestamp.
func (g *Guard) touch(ctx context.Context, keyID int64) {
	now := time.Now()
	g.mu.Lock()
	if now.Sub(g.touched[keyID]) < touchEvery {
		g.mu.Unlock()
		return
	}
	g.touched[keyID] = now
	if len(g.touched) > 10_000 { // forget old entries rather than grow
		for id, at := range g.touched {
			if now.Sub(at) >= touchEvery {
				delete(g.touched, id)
			}
		}
	}
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, g.cfg.CheckTimeout)
	defer cancel()
	if err := store.TouchAPIKey(ctx, g.db, keyID); err != nil {
		g.cfg.Logger.Debug("API key use not recorded", "key", keyID, "err", err)
	}
}

// RevokeToken revokes the token of c (logout) everywhere.
func (g *Guard) RevokeToken(ctx context.Context, c Claims) error {
	if err := store.RevokeToken(ctx, g.db, c.UserID, c.JTI, c.ExpiresAt); err != nil {
		return fmt.Errorf("revoke token of user %d: %w", c.UserID, err)
	}
	return g.forgetUser(ctx, c.UserID)
}

// RevokeTokensBefore revokes every token of userID issued before t
// (logout-all) everywhere.
func (g *Guard) RevokeTokensBefore(ctx context.Context, userID int64, t time.Time) error {
	if err := store.RevokeTokensBefore(ctx, g.db, userID, t); err != nil {
		return fmt.Errorf("revoke tokens of user %d: %w", userID, err)
	}
	return g.forgetUser(ctx, userID)
}

// ChangePassword sets userID's password hash and revokes every token of
// the user issued before t, everywhere.
func (g *Guard) ChangePassword(ctx context.Context, userID int64, passwordHash string, t time.Time) error {
	if err := store.ChangePassword(ctx, g.db, userID, passwordHash, t); err != nil {
		return fmt.Errorf("change password of user %d: %w", userID, err)
	}
	return g.forgetUser(ctx, userID)
}

// RevokeKey revokes userID's API key id everywhere; store.ErrNotFound
// when the user has no such key.
func (g *Guard) RevokeKey(ctx context.Context, userID, id int64) error {
	hash, err := store.RevokeAPIKey(ctx, g.db, userID, id)
	if err != nil {
		return err
	}
	return forget(ctx, g, g.keys, g.lastKeys, hex.EncodeToString(hash), "revoked API key", "key", id)
}

// forget drops one entry from this process's last answers and the shared
// cache (when there is one), after the database changed under it. An
// error leaves the change made but maybe not yet seen everywhere:
// errNotEverywhere, and the client retries (every revocation is
// idempotent).
func forget[V any](ctx context.Context, g *Guard, shared, last *cache.Typed[V], k, what string, attrs ...any) error {
	_ = last.Delete(ctx, k)
	if shared == nil {
		return nil
	}
	if err := shared.Delete(ctx, k); err != nil {
		g.cfg.Logger.Warn(what+" not dropped from the cache", append(attrs, "err", err)...)
		return errNotEverywhere()
	}
	return nil
}

// errNotEverywhere answers a revocation recorded in the database but not
// yet dropped from the shared cache: retrying it is safe and finishes it.
func errNotEverywhere() *fn.Error {
	return fn.Unavailable("the revocation is recorded but not yet in force everywhere; retry")
}

// forgetUser drops the user's revocations from every cache, after they
// changed (forget).
func (g *Guard) forgetUser(ctx context.Context, userID int64) error {
	return forget(ctx, g, g.revocations, g.lastRevs, strconv.FormatInt(userID, 10), "revocations", "user", userID)
}

// OnRevoke registers f to hear, from any process, that a user's tokens
// may have been revoked (userID), or, with all set, that any user's may
// have been (invalidations were missed). It reports false when the cache
// cannot tell (no near store): see cache.Cache.OnChange. f must not block.
func (g *Guard) OnRevoke(f func(userID int64, all bool)) bool {
	if g.revocations == nil {
		return false
	}
	return g.revocations.OnChange(func(k string, all bool) {
		if all {
			f(0, true)
			return
		}
		if id, err := strconv.ParseInt(k, 10, 64); err == nil {
			f(id, false)
		}
	})
}
