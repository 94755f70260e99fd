package stackrun

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"tidings/lib/testenv"
)

// TestOwnParticipantDatabasesPutsEachWhereAsked: with the participants'
// databases on the shared server or on servers of their own, the
// directory, persist and counter databases are three, each holding its own
// tables only, and the nodes are told where they are; without, one
// database holds all and the nodes are told the participants' URLs are
// empty (DATABASE_URL alone). Close drops every database the stack made.
func TestOwnParticipantDatabasesPutsEachWhereAsked(t *testing.T) {
	ctx := context.Background()
	directory := []string{"users", "topics", "subscriptions"}
	persist := []string{"notifications", "deliveries", "ack_outbox"}
	counter := []string{"counters", "pending_increments", "applied_acks"}
	for _, tc := range []struct {
		name      string
		placement *Placement // nil: OwnParticipantDatabases is not called
	}{
		{"one database", nil},
		{"shared server", &Placement{SharedServer: true}},
		{"servers of their own", &Placement{Durable: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Binaries are not built: the test starts no node.
			s, err := Binaries{t.TempDir()}.New(ctx, "test", Settings{})
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					s.Close()
				}
			}()
			if tc.placement != nil {
				if _, _, err := s.OwnParticipantDatabases(ctx, *tc.placement); err != nil {
					t.Fatal(err)
				}
			}
			urls := []string{s.URLs.Directory, s.URLs.Persist, s.URLs.Counter}
			want := map[bool]int{false: 1, true: 3}[tc.placement != nil]
			if distinct := len(slices.Compact(slices.Sorted(slices.Values(urls)))); distinct != want || s.DBURL != s.URLs.Directory {
				t.Fatalf("database URLs %v (DBURL %s), want %d distinct, the first DBURL", urls, s.DBURL, want)
			}
			if tc.placement != nil {
				shared := host(t, testenv.AdminURL())
				for _, u := range urls[1:] {
					if onShared := host(t, u) == shared; onShared != tc.placement.SharedServer {
						t.Errorf("participant's database at %s, want on the shared server (%s): %v", u, shared, tc.placement.SharedServer)
					}
				}
			}
			for i, own := range [][]string{directory, persist, counter} {
				got := tables(t, urls[i])
				for _, table := range own {
					if !slices.Contains(got, table) {
						t.Errorf("database %s has tables %v, want %s among them", urls[i], got, table)
					}
				}
				if tc.placement == nil {
					continue
				}
				for j, other := range [][]string{directory, persist, counter} {
					if j != i && slices.ContainsFunc(other, func(table string) bool { return slices.Contains(got, table) }) {
						t.Errorf("database %s has tables %v, some of another's %v", urls[i], got, other)
					}
				}
			}
			// A node gets each variable's last value in common, as os/exec
			// gives a command the last of duplicates.
			told := map[string]string{}
			for _, kv := range s.common {
				name, value, _ := strings.Cut(kv, "=")
				told[name] = value
			}
			wantTold := map[string]string{"DATABASE_URL": s.DBURL, "PERSIST_DATABASE_URL": "", "COUNTER_DATABASE_URL": ""}
			if tc.placement != nil {
				wantTold["PERSIST_DATABASE_URL"], wantTold["COUNTER_DATABASE_URL"] = s.URLs.Persist, s.URLs.Counter
			}
			for name, want := range wantTold {
				if told[name] != want {
					t.Errorf("nodes are told %s=%q, want %q", name, told[name], want)
				}
			}

			s.Close()
			closed = true
			for _, u := range urls {
				if conn, err := pgx.Connect(ctx, u); err == nil {
					conn.Close(ctx)
					t.Errorf("database %s still there after Close", u)
				}
			}
		})
	}
}

// TestSharedParticipantDatabasesCannotBeKilled: a participant's database
// on the shared server is refused Kill and Start, which would take every
// database there down.
func TestSharedParticipantDatabasesCannotBeKilled(t *testing.T) {
	ctx := context.Background()
	s, err := Binaries{t.TempDir()}.New(ctx, "test", Settings{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	persist, _, err := s.OwnParticipantDatabases(ctx, Placement{SharedServer: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := persist.Kill(); err == nil {
		t.Error("Kill of a database on the shared server: no error")
	}
	if err := persist.Start(ctx); err == nil {
		t.Error("Start of a database on the shared server: no error")
	}
	if err := persist.Pool.Ping(ctx); err != nil {
		t.Errorf("the shared server after the refused Kill: %v", err)
	}
}

// host is the host and port of the database at raw.
func host(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// tables lists the tables of the public schema of the database at url.
func tables(t *testing.T, url string) []string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, `SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'`)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}
