package stack

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadSubstitutesAndMergesEnvironmentFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("env.yml", "environment:\n  SHARED: ${SHARED_VALUE:-fallback}\n  exec_timeout: 1s\n")
	write("stack.yml", `
provider: {name: openfaas, gateway: "${GW:-http://127.0.0.1:8080}"}
functions:
  hello:
    lang: tidings-go
    handler: ./functions/hello
    image: ${REGISTRY:-example}/hello
    environment_file: [env.yml]
    environment: {exec_timeout: 3s, max_inflight: "7"}
`)
	t.Setenv("REGISTRY", "ghcr.io/me")
	f, err := Load(filepath.Join(dir, "stack.yml"))
	if err != nil {
		t.Fatal(err)
	}
	hello := f.Functions["hello"]
	if f.Provider.Gateway != "http://127.0.0.1:8080" || hello.Image != "ghcr.io/me/hello" {
		t.Errorf("substitution: gateway %q image %q", f.Provider.Gateway, hello.Image)
	}
	if hello.Environment["SHARED"] != "fallback" {
		t.Errorf("environment_file not merged: %v", hello.Environment)
	}
	limits, err := hello.CallLimits()
	if err != nil || limits.Timeout != 3*time.Second || limits.MaxInflight != 7 {
		t.Errorf("limits %+v (%v): the function's own environment must win over the file", limits, err)
	}
	hello.Environment["max_inflight"] = "many"
	if _, err := hello.CallLimits(); err == nil {
		t.Error("a max_inflight that is not a number was accepted")
	}
}
