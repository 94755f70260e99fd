package testenv

import "testing"

// TestEverySettingIsDocumentedWithItsDefault: the README names the
// servers the tests run against, with their defaults.
func TestEverySettingIsDocumentedWithItsDefault(t *testing.T) {
	CheckSettingsDocumented(t, DefaultSettings())
}
