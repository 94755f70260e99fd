package main

import (
	"testing"

	"tidings/lib/testenv"
)

// TestEverySettingIsDocumentedWithItsDefault: the README's configuration
// tables name every variable `make up` reads (gateway-ws's, the
// functions', its own), with its default.
func TestEverySettingIsDocumentedWithItsDefault(t *testing.T) {
	testenv.CheckSettingsDocumented(t, defaultSettings())
}
