package main

import (
	"testing"

	"tidings/lib/testenv"
)

// TestEverySettingIsDocumentedWithItsDefault: gateway-ws's configuration
// tables (README.md, gateway-ws/README.md) name every variable it reads,
// with the default it has.
func TestEverySettingIsDocumentedWithItsDefault(t *testing.T) {
	testenv.CheckSettingsDocumented(t, defaultSettings())
}
