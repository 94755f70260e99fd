package main

import (
	"os/exec"
	"strings"
	"testing"
)

// gateway-ws learns the functions from lib/catalog; linking a handler
// package (tidings/functions or one under it) would tie its build, and
// its binary, to every function's code again.
func TestGatewayLinksNoFunctionHandler(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "./gateway-ws")
	cmd.Dir = ".." // the module root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./gateway-ws: %v", err)
	}
	var handlers []string
	for pkg := range strings.FieldsSeq(string(out)) {
		if pkg == "tidings/functions" || strings.HasPrefix(pkg, "tidings/functions/") {
			handlers = append(handlers, pkg)
		}
	}
	if len(handlers) > 0 {
		t.Errorf("gateway-ws links function handler packages %v; read lib/catalog instead", handlers)
	}
}
