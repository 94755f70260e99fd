package metrics

import (
	"slices"
	"testing"
)

func TestRegistryRemembersTheNamesOfWhatIsRegistered(t *testing.T) {
	reg := NewRegistry()
	NewFunctions(reg)
	GaugeFunc(reg, "tidings_test_gauge", "a test gauge", func() float64 { return 1 })
	names := reg.Names()
	for _, want := range []string{"tidings_function_calls_total", "tidings_function_duration_seconds", "tidings_test_gauge", "go_goroutines"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s missing from %v", want, names)
		}
	}
}
