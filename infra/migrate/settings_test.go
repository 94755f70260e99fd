package main

import (
	"testing"

	"tidings/lib/testenv"
)

// TestEverySettingIsDocumentedWithItsDefault: the README's configuration
// tables name every variable migrate reads, with its default.
func TestEverySettingIsDocumentedWithItsDefault(t *testing.T) {
	testenv.CheckSettingsDocumented(t, defaultSettings())
}
