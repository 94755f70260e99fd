package stack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestLoadFollowsFaasCLI: variables are substituted in stack.yml only,
// never inside an environment_file, and the file wins over the inline
// environment (faas-cli's compileEnvironment).
func TestLoadFollowsFaasCLI(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"env.yml": "environment:\n  SHARED: ${SHARED_VALUE:-fallback}\n  exec_timeout: 1s\n",
		"stack.yml": `
provider: {name: openfaas, gateway: "${GW:-http://127.0.0.1:8080}"}
functions:
  hello:
    lang: tidings-go
    handler: ./functions/hello
    image: ${REGISTRY:-example}/hello
    environment_file: [env.yml]
    environment: {exec_timeout: 3s, max_inflight: "7", INLINE: "${SHARED_VALUE:-inline}"}
`})
	t.Setenv("REGISTRY", "docker.io/me")
	t.Setenv("SHARED_VALUE", "from-the-shell")
	f, err := Load(filepath.Join(dir, "stack.yml"))
	if err != nil {
		t.Fatal(err)
	}
	hello := f.Functions["hello"]
	if f.Provider.Gateway != "http://127.0.0.1:8080" || hello.Image != "docker.io/me/hello" {
		t.Errorf("stack.yml substitution: gateway %q image %q", f.Provider.Gateway, hello.Image)
	}
	if hello.Environment["INLINE"] != "from-the-shell" {
		t.Errorf("inline environment: INLINE=%q, want the shell's value", hello.Environment["INLINE"])
	}
	if got := hello.Environment["SHARED"]; got != "${SHARED_VALUE:-fallback}" {
		t.Errorf("environment_file: SHARED=%q; faas-cli deploys it literally", got)
	}
	limits, err := hello.CallLimits()
	if err != nil || limits.Timeout != time.Second || limits.MaxInflight != 7 {
		t.Errorf("limits %+v (%v): the environment file must win over the inline environment", limits, err)
	}
	hello.Environment["max_inflight"] = "many"
	if _, err := hello.CallLimits(); err == nil {
		t.Error("a max_inflight that is not a number was accepted")
	}
}

// TestCommunityEditionRulesRefuseWhatCERefuses feeds one stack with every
// problem OpenFaaS CE (or faas-cli's environment files) would trip on, and
// one without.
func TestCommunityEditionRulesRefuseWhatCERefuses(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"env.yml":  "environment:\n  DATABASE_URL: ${DATABASE_URL:-postgres://db}\n",
		"good.yml": "environment:\n  LOG_LEVEL: info\n",
		"stack.yml": `
provider: {name: openfaas}
functions:
  bad:
    image: ghcr.io/me/bad:1
    environment_file: [env.yml]
    secrets: [made, not-made]
    labels: {com.openfaas.scale.min: "6", com.openfaas.scale.max: "10", com.openfaas.scale.zero: "true", com.openfaas.scale.target: "50"}
  good:
    image: docker.io/me/good:1
    environment_file: [good.yml]
    secrets: [made]
    labels: {com.openfaas.scale.min: "1", com.openfaas.scale.max: "5"}
`})
	f, err := Load(filepath.Join(dir, "stack.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, err := range f.CommunityEditionProblems() {
		got = append(got, err.Error())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		"bad: com.openfaas.scale.min=6", "bad: com.openfaas.scale.max=10", "bad: com.openfaas.scale.zero=true",
		"bad: com.openfaas.scale.target", `bad: image "ghcr.io/me/bad:1"`, "environment_file env.yml: DATABASE_URL=",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no problem reported for %q; got:\n%s", want, all)
		}
	}
	if strings.Contains(all, "good") {
		t.Errorf("the good function was refused:\n%s", all)
	}
	missing := f.MissingSecrets([]string{"made"})
	if len(missing) != 1 || !strings.Contains(missing[0].Error(), "bad uses secret not-made") {
		t.Errorf("missing secrets: %v, want only bad's not-made", missing)
	}
}

func TestPublicImageAcceptsOnlyRegistriesThatPublishPublicly(t *testing.T) {
	for ref, public := range map[string]bool{
		"docker.io/tidings/login:latest":            true,
		"tidings/login:1":                           true,
		"localhost:5000/login":                      true,
		"ghcr.io/you/login:latest":                  false,
		"quay.io/you/login":                         false,
		"${REGISTRY}/login":                         false,
		"123.dkr.ecr.eu-west-1.amazonaws.com/login": false,
	} {
		if err := PublicImage(ref); (err == nil) != public {
			t.Errorf("PublicImage(%q) = %v, want public=%v", ref, err, public)
		}
	}
}

func TestCheckTemplateWantsWhatFaasCLINewCopies(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"template/demo/template.yml": "language: demo\nfprocess: handler\n",
		"template/demo/Dockerfile":   "FROM scratch\n",
	})
	tmpl := filepath.Join(dir, "template", "demo")
	if err := CheckTemplate(tmpl); err == nil || !strings.Contains(err.Error(), "no function/ folder") {
		t.Errorf("a template without function/ passed: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(tmpl, "function"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmpl, "function", "handler.go"), []byte("package function\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckTemplate(tmpl); err != nil {
		t.Errorf("a complete template was refused: %v", err)
	}
}
