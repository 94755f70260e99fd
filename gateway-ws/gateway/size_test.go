package gateway

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// maxFileLines is the most lines a .go file of this package may have
// (tests included): past it a file does more than one job and is split by
// concern (issue 11).
const maxFileLines = 350

// TestNoFileOfThePackageIsOverMaxFileLines keeps the package split by
// concern: every .go file stays within maxFileLines.
func TestNoFileOfThePackageIsOverMaxFileLines(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("list the package's files: %v (%d found)", err, len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(b, []byte("\n")); n > maxFileLines {
			t.Errorf("%s has %d lines, want at most %d: split it by concern", f, n, maxFileLines)
		}
	}
}
