package logging_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"tidings/lib/logging"
)

// TestNewToWritesJSONAtTheGivenLevelWithTheComponent: records below the
// level are dropped, the rest are JSON objects carrying the component, and
// an unknown level means info.
func TestNewToWritesJSONAtTheGivenLevelWithTheComponent(t *testing.T) {
	for _, tc := range []struct {
		level     string
		wantDebug bool
		wantInfo  bool
	}{
		{"debug", true, true},
		{"DEBUG", true, true},
		{"info", false, true},
		{"warn", false, false},
		{"nonsense", false, true},
		{"", false, true},
	} {
		var buf bytes.Buffer
		log := logging.NewTo(&buf, tc.level, "tester")
		log.Debug("d")
		log.Info("i")
		log.Warn("w")
		var msgs []string
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var rec struct{ Msg, Component string }
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("level %q: not a JSON record: %q", tc.level, line)
			}
			if rec.Component != "tester" {
				t.Errorf("level %q: component = %q, want tester", tc.level, rec.Component)
			}
			msgs = append(msgs, rec.Msg)
		}
		want := []string{"w"}
		if tc.wantInfo {
			want = append([]string{"i"}, want...)
		}
		if tc.wantDebug {
			want = append([]string{"d"}, want...)
		}
		if strings.Join(msgs, ",") != strings.Join(want, ",") {
			t.Errorf("level %q: logged %v, want %v", tc.level, msgs, want)
		}
	}
}

// TestOrFallsBackToALoggerThatWritesNothing: a nil logger becomes one that
// can be used and discards; a given one is kept.
func TestOrFallsBackToALoggerThatWritesNothing(t *testing.T) {
	logging.Or(nil).Error("nowhere") // must not panic
	var buf bytes.Buffer
	given := logging.NewTo(&buf, "info", "x")
	if logging.Or(given) != given {
		t.Fatal("Or replaced a given logger")
	}
}
