package catalog

import (
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"tidings/lib/config"
)

// Lookup searches the table by halves: it must stay sorted, one entry a
// name.
func TestCatalogueIsSortedByNameWithoutDuplicates(t *testing.T) {
	for i := 1; i < len(functions); i++ {
		if functions[i-1].Name >= functions[i].Name {
			t.Errorf("%q before %q: the table must be sorted by name, each name once", functions[i-1].Name, functions[i].Name)
		}
	}
}

func TestEveryFunctionIsCalledWithGETOrPOST(t *testing.T) {
	for _, f := range All() {
		if f.Method != http.MethodGet && f.Method != http.MethodPost {
			t.Errorf("%s: method %q, want GET or POST (the job queue and gateway-ws know no other)", f.Name, f.Method)
		}
	}
}

// A client's job runs with the internal key's caller, so a queueable
// internal function would let a client call it.
func TestNoInternalFunctionIsQueueableByClients(t *testing.T) {
	for _, f := range All() {
		if f.Internal && f.Queueable {
			t.Errorf("%s is internal and queueable: clients would reach it through POST /api/jobs/%s", f.Name, f.Name)
		}
	}
}

func TestLookupFindsEveryFunctionAndNoOther(t *testing.T) {
	for _, want := range All() {
		if got, ok := Lookup(want.Name); !ok || got != want {
			t.Errorf("Lookup(%q) = %+v %v, want %+v", want.Name, got, ok, want)
		}
	}
	for _, name := range []string{"", "nope", "aaa", "zzz", "Login", "login "} {
		if f, ok := Lookup(name); ok {
			t.Errorf("Lookup(%q) found %+v", name, f)
		}
	}
}

// The contract as the README and the clients know it: which functions a
// browser may call and queue.
func TestPublicAndQueueableFunctionsAreTheContracts(t *testing.T) {
	public := []string{"ack-all", "ack-notification", "change-password", "create-api-key", "create-topic", "gen-avatar",
		"get-counter", "list-api-keys", "list-notifications", "list-topics", "login", "logout", "logout-all",
		"register", "revoke-api-key", "subscribe", "unsubscribe"}
	if got := Public(); !slices.Equal(got, public) {
		t.Errorf("public functions %v, want %v", got, public)
	}
	if got := Queueable(); !slices.Equal(got, []string{"gen-avatar"}) {
		t.Errorf("queueable functions %v, want [gen-avatar]", got)
	}
	if n := len(Names()) - len(public); n != 13 {
		t.Errorf("%d internal functions, want the eight notify-*/counter-* participants, notify-acks, counter-ack, counter-read, notify-since and send-mail", n)
	}
}

// Which functions an API key may call, and with which scope (docs/api.md):
// none of the credential functions (a key cannot mint keys or sign out),
// no internal one.
func TestKeyScopesAreTheContract(t *testing.T) {
	want := map[string]string{"create-topic": ScopeManage, "list-topics": ScopeManage,
		"list-notifications": ScopeRead, "get-counter": ScopeRead}
	for _, f := range All() {
		if f.KeyScope != want[f.Name] {
			t.Errorf("%s: key scope %q, want %q", f.Name, f.KeyScope, want[f.Name])
		}
		if f.KeyScope != "" && (f.Internal || !slices.Contains(Scopes, f.KeyScope)) {
			t.Errorf("%s: scope %q on an internal function or not one of %v", f.Name, f.KeyScope, Scopes)
		}
	}
}

// All hands out a copy: a caller cannot change the catalogue.
func TestAllReturnsACopy(t *testing.T) {
	all := All()
	all[0].Internal = !all[0].Internal
	if f, _ := Lookup(all[0].Name); f.Internal == all[0].Internal {
		t.Errorf("changing All's answer changed the catalogue's %s", f.Name)
	}
}

// Which participant's database each function uses, as functions.go builds
// it: notify-* and the notification list and acks use the persist
// participant's, counter-* and get-counter the counter's. A function added
// under one of those prefixes fails here until it names its participant,
// and then the deployment tests until each deployment gives it that URL.
func TestParticipantFunctionsNameTheirDatabase(t *testing.T) {
	want := map[string]string{"ack-all": Persist, "ack-notification": Persist, "list-notifications": Persist, "get-counter": Counter}
	for _, f := range All() {
		w := want[f.Name]
		switch {
		case strings.HasPrefix(f.Name, "notify-"):
			w = Persist
		case strings.HasPrefix(f.Name, "counter-"):
			w = Counter
		}
		if f.Participant != w {
			t.Errorf("%s: participant %q, want %q", f.Name, f.Participant, w)
		}
	}
}

func TestCheckParticipantEnvRefusesAMissingOrForeignURL(t *testing.T) {
	set := func(envs ...string) func(string) bool {
		return func(env string) bool { return slices.Contains(envs, env) }
	}
	for _, c := range []struct {
		participant string
		env         []string
		ok          bool
	}{
		{"", nil, true},
		{"", []string{"PERSIST_DATABASE_URL"}, false},
		{"", []string{"COUNTER_DATABASE_URL"}, false},
		{Persist, []string{"PERSIST_DATABASE_URL"}, true},
		{Persist, nil, false},
		{Persist, []string{"PERSIST_DATABASE_URL", "COUNTER_DATABASE_URL"}, false},
		{Counter, []string{"COUNTER_DATABASE_URL"}, true},
		{Counter, []string{"PERSIST_DATABASE_URL"}, false},
	} {
		if err := CheckParticipantEnv(c.participant, set(c.env...)); (err == nil) != c.ok {
			t.Errorf("participant %q with %v: %v, want ok=%v", c.participant, c.env, err, c.ok)
		}
	}
}

// ParticipantEnv names the variables lib/config reads.
func TestParticipantEnvIsWhatConfigReads(t *testing.T) {
	typ := reflect.TypeFor[config.Config]()
	for p, field := range map[string]string{Persist: "PersistDatabaseURL", Counter: "CounterDatabaseURL"} {
		f, _ := typ.FieldByName(field)
		if got := f.Tag.Get("env"); got != ParticipantEnv[p] {
			t.Errorf("config.Config.%s reads %q, ParticipantEnv[%s] is %q", field, got, p, ParticipantEnv[p])
		}
	}
}
