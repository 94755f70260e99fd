package catalog

import (
	"net/http"
	"slices"
	"testing"
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
	public := []string{"ack-notification", "create-topic", "gen-avatar", "get-counter", "list-notifications",
		"list-topics", "login", "register", "subscribe", "unsubscribe"}
	if got := Public(); !slices.Equal(got, public) {
		t.Errorf("public functions %v, want %v", got, public)
	}
	if got := Queueable(); !slices.Equal(got, []string{"gen-avatar"}) {
		t.Errorf("queueable functions %v, want [gen-avatar]", got)
	}
	if n := len(Names()) - len(public); n != 9 {
		t.Errorf("%d internal functions, want the eight notify-*/counter-* and send-mail", n)
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
