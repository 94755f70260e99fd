package auth

import (
	"errors"

	"tidings/lib/fn"
	"tidings/lib/store"
)

// ErrUserGone answers a valid token whose user no longer exists: the
// credential no longer names anyone, so it is refused like a bad one.
func ErrUserGone() *fn.Error { return fn.Unauthorized("the token's user no longer exists") }

// KnownCaller is Caller for functions that act for a user: it also checks
// that the token's user still exists, so a deleted user's token gets a 401
// instead of an empty answer or a refused write.
func (t *Tokens) KnownCaller(req fn.Request, db store.Querier) (int64, error) {
	id, err := t.Caller(req)
	if err != nil {
		return 0, err
	}
	if err := UserGone(store.RequireUser(req.Context(), db, id)); err != nil {
		return 0, err
	}
	return id, nil
}

// UserGone turns store.ErrUnknownUser (the user deleted since the token
// was checked) into ErrUserGone(); any other error passes unchanged.
func UserGone(err error) error {
	if errors.Is(err, store.ErrUnknownUser) {
		return ErrUserGone()
	}
	return err
}
