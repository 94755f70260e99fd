package config

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// envFuncs are the functions of package os that read or change the
// environment.
var envFuncs = []string{"Getenv", "LookupEnv", "Setenv", "Unsetenv", "Clearenv", "Environ", "ExpandEnv"}

// envExceptions are the only places outside lib/config allowed to touch
// the environment, each for a reason that is not configuration: the
// package directory and what it may use.
var envExceptions = map[string][]string{
	// faas-cli substitutes ${VAR} in stack.yml from the environment; lib/stack
	// does the same, through drone/envsubst, when it loads stack.yml.
	"lib/stack": {"github.com/drone/envsubst"},
	// The processes the tools start inherit the tool's environment.
	"infra/proc": {"os.Environ"},
}

// envLibraries are imported only where envExceptions (or lib/config) say:
// they read the environment themselves.
var envLibraries = []string{"github.com/caarlos0/env/v11", "github.com/drone/envsubst"}

// TestOnlyLibConfigReadsTheEnvironment parses every non-test Go file of
// the module and fails on any call that reads or sets the environment, or
// any import of a library that does, outside lib/config and the few
// exceptions above: each binary reads its environment once, through
// Parse, and passes plain structs down.
func TestOnlyLibConfigReadsTheEnvironment(t *testing.T) {
	root, err := filepath.Abs("../..") // go test runs in lib/config
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		found = append(found, envUses(t, path, filepath.ToSlash(filepath.Dir(rel)))...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		t.Errorf("%s: only lib/config reads the environment (parse it into the binary's settings with config.Parse)", f)
	}
}

// envUses lists the environment reads and writes of one file in dir that
// no exception allows, as "file:line: what".
func envUses(t *testing.T, path, dir string) []string {
	t.Helper()
	if dir == "lib/config" {
		return nil
	}
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	allowed := envExceptions[dir]
	var out []string
	osName := ""
	for _, imp := range file.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if p == "os" {
			osName = "os"
			if imp.Name != nil {
				osName = imp.Name.Name
			}
		}
		if slices.Contains(envLibraries, p) && !slices.Contains(allowed, p) {
			out = append(out, fmt.Sprintf("%s: imports %s", fset.Position(imp.Pos()), p))
		}
	}
	if osName == "" {
		return out
	}
	ast.Inspect(file, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); ok && id.Name == osName && slices.Contains(envFuncs, sel.Sel.Name) &&
			!slices.Contains(allowed, "os."+sel.Sel.Name) {
			out = append(out, fmt.Sprintf("%s: os.%s", fset.Position(sel.Pos()), sel.Sel.Name))
		}
		return true
	})
	return out
}
