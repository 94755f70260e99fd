package fnhost

import (
	"maps"
	"strings"
	"testing"

	"tidings/functions"
	"tidings/lib/catalog"
	"tidings/lib/stack"
)

// The dev host serves the catalogue, each function with its stack file
// entry's limits: a stack file that leaves a catalogue function out, or
// names one the catalogue does not list, is refused before anything is
// served.
func TestFromStackServesExactlyTheCatalogue(t *testing.T) {
	full := map[string]stack.Function{}
	for _, name := range catalog.Names() {
		full[name] = stack.Function{Environment: map[string]string{"exec_timeout": "3s"}}
	}
	deps := &functions.Deps{}
	fns, err := FromStack(&stack.File{Functions: full}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if len(fns) != len(full) || fns["login"].Handler == nil || fns["login"].Limits.Timeout.Seconds() != 3 {
		t.Errorf("served %d functions (login %+v), want the catalogue's %d with stack.yml's limits", len(fns), fns["login"], len(full))
	}

	lacking := maps.Clone(full)
	delete(lacking, "send-mail")
	if _, err := FromStack(&stack.File{Functions: lacking}, deps); err == nil || !strings.Contains(err.Error(), "send-mail") {
		t.Errorf("a stack file without send-mail: %v, want an error naming it", err)
	}
	extra := maps.Clone(full)
	extra["report"] = stack.Function{}
	if _, err := FromStack(&stack.File{Functions: extra}, deps); err == nil || !strings.Contains(err.Error(), "report") {
		t.Errorf("a stack file with a function outside the catalogue: %v, want an error naming it", err)
	}
}
