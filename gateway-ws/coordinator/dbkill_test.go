package coordinator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	sendmail "tidings/functions/send-mail"
	"tidings/lib/fn"
	"tidings/lib/notification"
	"tidings/lib/testenv"
)

// TestParticipantDatabaseKilledDuringPublishIsFinishedByRecovery kills one
// participant's PostgreSQL server alone (SIGKILL of all its processes) in
// the middle of a publish, the other participant's and the directory's
// databases staying up, and starts it again only after the publisher has
// its answer:
//
//   - killed when its prepare arrives (before the prepare reaches the
//     database): the prepare fails, the publisher gets *AbortedError at
//     once, and the rollback the dead participant is owed is left to
//     recovery (the record stays aborting);
//   - killed once both voted yes (the AfterPrepare point, before the
//     decision): the commit is decided and the live participant may
//     commit, but the dead one cannot; the publisher gets a pending
//     result (Result.Pending, no error) after PhaseTwoTimeout, and
//     recovery commits the rest.
//
// Afterwards, once the server is back and recovery has run: the
// invariant holds across the two databases, nothing is prepared, no
// record is unfinished, and the notification exists exactly when the
// publish was decided.
func TestParticipantDatabaseKilledDuringPublishIsFinishedByRecovery(t *testing.T) {
	for _, participant := range []string{"persist", "counter"} {
		prepare := map[string]string{"persist": "notify-prepare", "counter": "counter-prepare"}[participant]
		t.Run(participant+"/killed-at-its-prepare", func(t *testing.T) {
			h, srv := newHarnessKillable(t, participant, nil)
			real := h.host.fns[prepare].Handler
			var once sync.Once
			h.replace(prepare, fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
				once.Do(srv.Kill) // the fault: the database dies as the prepare arrives
				return real.Handle(req)
			}))
			owner, topic, subs := h.world()
			_, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "prepare hits a dead database"})
			var aborted *AbortedError
			if !errors.As(err, &aborted) {
				t.Fatalf("publish with the %s database killed at its prepare: %v, want AbortedError", participant, err)
			}
			// The dead participant's rollback is unacknowledged.
			h.restartAndRecover(srv, aborted.TxID, Aborting, Aborted, subs[0])
		})
		t.Run(participant+"/killed-after-both-voted", func(t *testing.T) {
			var srv *testenv.PostgresServer
			h, srv := newHarnessKillable(t, participant, func(at Fault) bool {
				if at == AfterPrepare {
					srv.Kill() // the fault: both voted yes, then the database dies
				}
				return false
			})
			owner, topic, subs := h.world()
			res, err := h.coord.Publish(context.Background(), owner, topic, notification.Message{Title: "commit hits a dead database"})
			if err != nil || !res.Pending || res.NotificationID == 0 {
				t.Fatalf("publish with the %s database killed after both voted: %+v %v, want a pending result", participant, res, err)
			}
			// The dead participant's commit is unacknowledged.
			h.restartAndRecover(srv, res.TxID, Committing, Committed, subs[0])
		})
	}
}

// newHarnessKillable is a harness whose participant ("persist" or
// "counter") has its database on a PostgreSQL server of its own, returned
// to be killed; the directory and the other participant stay on the
// shared server. Phase two gives up quickly, so a publish against a dead
// database answers within a second, and recovery runs every 100ms.
func newHarnessKillable(t *testing.T, participant string, crash func(Fault) bool) (*harness, *testenv.PostgresServer) {
	srv := testenv.StartPostgresServer(t)
	dbs := testenv.NewDatabases(t)
	if participant == "persist" {
		dbs.Persist = srv.DB()
	} else {
		dbs.Counter = srv.DB()
	}
	h := newHarnessWith(t, dbs, testenv.NewRedis(t), nil, nil, sendmail.Config{})
	h.settings.PhaseTwoTimeout = 500 * time.Millisecond
	h.settings.RecoveryInterval = 100 * time.Millisecond
	h.coord = h.newCoordinator(crash)
	return h, srv
}

// restartAndRecover checks that transaction txID was left in state left
// by its publisher, starts the killed server again, runs recovery until
// everything is settled (the invariant across the two databases, no
// unfinished record), and checks the record ended final, with the one
// notification committed and counted for user exactly if final is
// committed.
func (h *harness) restartAndRecover(srv *testenv.PostgresServer, txID, left, final string, user int64) {
	h.t.Helper()
	if s := h.txState(txID); s != left {
		h.t.Fatalf("record %q right after the publish, want %q", s, left)
	}
	srv.Start()
	h.recoverUntilSettled(h.newCoordinator(nil))
	if s := h.txState(txID); s != final {
		h.t.Errorf("record %q after recovery, want %q", s, final)
	}
	want := 0
	if final == Committed {
		want = 1
	}
	if n := h.count(h.dbs.Persist, `SELECT count(*) FROM notifications WHERE state = 'committed'`); n != want {
		h.t.Errorf("%d committed notifications, want %d", n, want)
	}
	if n := h.count(h.dbs.Counter, `SELECT coalesce((SELECT unread FROM counters WHERE user_id = $1), 0)`, user); n != want {
		h.t.Errorf("unread of a subscriber %d, want %d", n, want)
	}
}
