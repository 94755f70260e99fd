package functions

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"tidings/lib/auth"
	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/fn"
)

// The catalogue and the handlers are one table in two halves: every
// catalogue entry has a constructor here, and no constructor builds a
// function the catalogue does not list (gateway-ws would never call it).
func TestEveryCatalogueFunctionHasAHandlerAndNoOther(t *testing.T) {
	var built []string
	for name := range constructors {
		built = append(built, name)
	}
	slices.Sort(built)
	if names := catalog.Names(); !slices.Equal(built, names) {
		t.Errorf("handlers for %v\nthe catalogue lists %v", built, names)
	}
}

func TestNewRefusesAFunctionOutsideTheCatalogue(t *testing.T) {
	if h, err := New("no-such-function", &Deps{}); err == nil || h != nil {
		t.Errorf("New(no-such-function) = %v, %v; want an error", h, err)
	}
}

// A handler answers its catalogue method and refuses the other one with
// 405 naming it, so the job queue and gateway-ws, which call with the
// catalogue's method, call it the way it expects. (Each handler checks
// the method before it touches a dependency: none is needed here.)
func TestEveryHandlerIsCalledWithItsCatalogueMethod(t *testing.T) {
	const key = "internal-key"
	deps := &Deps{Config: config.Config{InternalKey: key, SecretsDir: t.TempDir()}}
	for _, f := range catalog.All() {
		h, err := New(f.Name, deps)
		if err != nil {
			t.Fatal(err)
		}
		other := http.MethodPost
		if f.Method == http.MethodPost {
			other = http.MethodGet
		}
		_, err = h.Handle(fn.Request{Method: other, Header: http.Header{auth.InternalKeyHeader: {key}}})
		var ferr *fn.Error
		if !errors.As(err, &ferr) || ferr.Status != http.StatusMethodNotAllowed || !strings.Contains(ferr.Message, f.Method) {
			t.Errorf("%s called with %s: %v, want 405 asking for %s (the catalogue's method)", f.Name, other, err, f.Method)
		}
	}
}
