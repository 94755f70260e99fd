package stackrun

import (
	"testing"

	"tidings/lib/testenv"
)

// TestEverySettingIsDocumentedWithItsDefault: the README names what the
// chaos and benchmark tools read to run a stack, with its default.
func TestEverySettingIsDocumentedWithItsDefault(t *testing.T) {
	testenv.CheckSettingsDocumented(t, Settings{})
}
