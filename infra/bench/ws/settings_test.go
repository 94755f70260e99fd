package main

import (
	"testing"

	"tidings/lib/testenv"
)

// TestEverySettingIsDocumentedWithItsDefault: the README names what the
// WebSocket bench reads, with its default (PATH is only handed on to the
// servers it starts).
func TestEverySettingIsDocumentedWithItsDefault(t *testing.T) {
	testenv.CheckSettingsDocumented(t, settings{Settings: testenv.DefaultSettings()}, "PATH")
}
