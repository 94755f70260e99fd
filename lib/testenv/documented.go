package testenv

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"tidings/lib/config"
)

// Readmes are the files whose configuration tables document every
// setting, relative to the module's root.
var Readmes = []string{"README.md", "gateway-ws/README.md"}

// CheckSettingsDocumented fails t unless every variable root reads
// (config.Settings) is named in a configuration table of Readmes, with
// the same default each time it is named: a default in backticks is the
// value itself ("`10s`"), one in words ("(same host)", "none") says the
// setting has no value by default. A row names its variables in
// backticks in its first cell, several at once as "`A` / `B`" or "`A`,
// `B`", with their defaults in the second cell the same way. Names in
// undocumented are not checked (say why at the call).
func CheckSettingsDocumented(t *testing.T, root any, undocumented ...string) {
	t.Helper()
	documented := documentedDefaults(t)
	for _, s := range config.Settings(root) {
		if slices.Contains(undocumented, s.Name) {
			continue
		}
		docs, ok := documented[s.Name]
		if !ok {
			t.Errorf("$%s (default %q) is in no configuration table of %s", s.Name, s.Default, strings.Join(Readmes, " or "))
			continue
		}
		for _, d := range docs {
			switch {
			case d.literal && !sameValue(d.value, s.Default):
				t.Errorf("%s: $%s defaults to %q, not %q", d.where, s.Name, s.Default, d.value)
			case !d.literal && s.Default != "":
				t.Errorf("%s: $%s defaults to %q; the table says %q", d.where, s.Name, s.Default, d.value)
			}
		}
	}
}

// sameValue reports whether a documented default is the setting's: the
// same text, or the same duration written another way ("60s", "1m").
func sameValue(documented, actual string) bool {
	if documented == actual {
		return true
	}
	d1, err1 := config.ParseDuration(documented)
	d2, err2 := config.ParseDuration(actual)
	return err1 == nil && err2 == nil && d1 == d2
}

// documentedDefault is one table's default for one variable.
type documentedDefault struct {
	where   string // file:line
	value   string
	literal bool // in backticks: the value; else words about it
}

var envName = regexp.MustCompile("^`([A-Za-z_][A-Za-z0-9_]*)`$")

// documentedDefaults reads every configuration table row of Readmes.
func documentedDefaults(t *testing.T) map[string][]documentedDefault {
	t.Helper()
	root := moduleRoot(t)
	out := map[string][]documentedDefault{}
	for _, readme := range Readmes {
		b, err := os.ReadFile(filepath.Join(root, readme))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			cells := strings.Split(line, "|")
			if len(cells) < 4 || strings.TrimSpace(cells[0]) != "" {
				continue
			}
			names, sep := splitCell(strings.TrimSpace(cells[1]))
			if names == nil {
				continue
			}
			for j, n := range names {
				m := envName.FindStringSubmatch(n)
				if m == nil {
					names = nil
					break
				}
				names[j] = m[1]
			}
			if names == nil {
				continue
			}
			defaults := []string{strings.TrimSpace(cells[2])}
			if len(names) > 1 {
				defaults = strings.Split(defaults[0], sep)
			}
			where := readme + ":" + strconv.Itoa(i+1)
			if len(defaults) == 1 && len(names) > 1 {
				for range names[1:] {
					defaults = append(defaults, defaults[0])
				}
			}
			if len(defaults) != len(names) {
				t.Errorf("%s: %d variables but %d defaults", where, len(names), len(defaults))
				continue
			}
			for j, name := range names {
				d := strings.TrimSpace(defaults[j])
				doc := documentedDefault{where: where, value: d}
				if rest, ok := strings.CutPrefix(d, "`"); ok {
					doc.value, _, _ = strings.Cut(rest, "`")
					doc.literal = true
				}
				out[name] = append(out[name], doc)
			}
		}
	}
	return out
}

// splitCell splits a first cell naming several variables ("`A` / `B`",
// "`A`, `B`") and says which separator it used.
func splitCell(cell string) ([]string, string) {
	if !strings.HasPrefix(cell, "`") {
		return nil, ""
	}
	for _, sep := range []string{" / ", ", "} {
		if strings.Contains(cell, sep) {
			return strings.Split(cell, sep), sep
		}
	}
	return []string{cell}, ""
}

// moduleRoot is the directory of go.mod above the working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
