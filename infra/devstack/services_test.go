package main

import (
	"context"
	"log/slog"
	"testing"

	"tidings/lib/config"
)

// A developer who names DATABASE_URL names where tidings lives: the
// participants' databases are the ones they name, else that one, as for
// every tidings process; make up creates nothing on their server.
func TestGivenDatabaseURLIsUsedForTheParticipantsTheDeveloperLeftOut(t *testing.T) {
	const dir, counter = "postgres://u@db.invalid/app", "postgres://u@other.invalid/c"
	for _, c := range []struct {
		given, want config.Databases
	}{
		{config.Databases{Directory: dir}, config.Databases{Directory: dir, Persist: dir, Counter: dir}},
		{config.Databases{Directory: dir, Counter: counter}, config.Databases{Directory: dir, Persist: dir, Counter: counter}},
	} {
		got, svc, err := ensurePostgres(context.Background(), slog.New(slog.DiscardHandler), c.given, "1", "tidings")
		if err != nil || got != c.want || svc.stop != nil {
			t.Errorf("given %+v: %+v (server started: %v, %v), want %+v", c.given, got, svc.stop != nil, err, c.want)
		}
	}
}
