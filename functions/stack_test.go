package functions_test

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"tidings/lib/catalog"
	"tidings/lib/stack"
)

func loadStack(t *testing.T) *stack.File {
	t.Helper()
	sf, err := stack.Load("../stack.yml")
	if err != nil {
		t.Fatal(err)
	}
	return sf
}

// functionDirs lists the function packages: the folders under functions/.
func functionDirs(t *testing.T) []string {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	return dirs
}

// recipeSecrets lists the secrets infra/openfaas/deploy.sh creates.
func recipeSecrets(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("bash", "../infra/openfaas/deploy.sh", "names").Output()
	if err != nil {
		t.Fatalf("deploy.sh names: %v", err)
	}
	return strings.Fields(string(out))
}

// TestStackDeploysOnOpenFaaSCommunityEdition checks stack.yml, its
// environment files and its template with the rules of faas-cli,
// faas-netes and faasd (lib/stack names the source files): no variable
// in an environment file, scale labels within CE's limit, public images,
// every secret created by the recipe, a template `faas-cli new` can use.
// It reads the stack with the deployer's shell empty, as the docs' recipe
// starts.
func TestStackDeploysOnOpenFaaSCommunityEdition(t *testing.T) {
	emptyShell(t)
	sf := loadStack(t)
	for _, err := range sf.CommunityEditionProblems() {
		t.Error(err)
	}
	for _, err := range sf.MissingSecrets(recipeSecrets(t)) {
		t.Error(err)
	}
	langs := map[string]bool{}
	for _, f := range sf.Functions {
		langs[f.Lang] = true
	}
	for lang := range langs {
		if err := stack.CheckTemplate(filepath.Join("..", "template", lang)); err != nil {
			t.Error(err)
		}
	}
}

// emptyShell clears the variables stack.yml substitutes, as the docs'
// recipe starts.
func emptyShell(t *testing.T) {
	for _, v := range []string{"REGISTRY", "TAG", "DATABASE_URL", "PERSIST_DATABASE_URL", "COUNTER_DATABASE_URL", "REDIS_URL"} {
		t.Setenv(v, "")
	}
}

// checkDatabases checks one deployment's environment for a function (or
// gateway-ws, participant ""): its participant's database URL and no
// other participant's (catalog.CheckParticipantEnv), naming a database
// apart from the directory's.
func checkDatabases(t *testing.T, where, participant string, env map[string]string) {
	t.Helper()
	if err := catalog.CheckParticipantEnv(participant, func(k string) bool { return env[k] != "" }); err != nil {
		t.Errorf("%s: %v", where, err)
	}
	if k := catalog.ParticipantEnv[participant]; k != "" && env[k] == env["DATABASE_URL"] {
		t.Errorf("%s: %s is DATABASE_URL's database %q: the participant's tables belong apart from the directory", where, k, env[k])
	}
}

// TestStackGivesEachParticipantItsOwnDatabase: with the shell empty,
// stack.yml's defaults give each participant's function (lib/catalog)
// that participant's database, apart from the directory, and no other.
func TestStackGivesEachParticipantItsOwnDatabase(t *testing.T) {
	emptyShell(t)
	for name, f := range loadStack(t).Functions {
		fn, _ := catalog.Lookup(name)
		checkDatabases(t, "stack.yml "+name, fn.Participant, f.Environment)
	}
}

// TestCommunityEditionFunctionLimitIsDocumented keeps the docs' statement
// about OpenFaaS CE's function limit true as functions are added.
func TestCommunityEditionFunctionLimitIsDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/deploy-openfaas-k8s.md")
	if err != nil {
		t.Fatal(err)
	}
	over := len(catalog.Names()) > stack.CEMaxFunctions
	claim := fmt.Sprintf("The catalogue has %d functions", len(catalog.Names()))
	if over && !strings.Contains(string(b), claim) {
		t.Errorf("docs/deploy-openfaas-k8s.md must say %q (more than CE's %d)", claim, stack.CEMaxFunctions)
	}
	if !over && strings.Contains(string(b), "more than Community Edition deploys") {
		t.Errorf("the catalogue fits CE's %d functions now; update docs/deploy-openfaas-k8s.md", stack.CEMaxFunctions)
	}
}

func TestStackListsEveryFunctionPackageAndNoOther(t *testing.T) {
	sf := loadStack(t)
	var inStack []string
	for name := range sf.Functions {
		inStack = append(inStack, name)
	}
	slices.Sort(inStack)
	dirs := functionDirs(t)
	if !slices.Equal(inStack, dirs) {
		t.Errorf("stack.yml functions %v != packages under functions/ %v", inStack, dirs)
	}
	if !slices.Equal(catalog.Names(), dirs) {
		t.Errorf("catalogue %v != packages under functions/ %v", catalog.Names(), dirs)
	}
}

func TestStackFunctionsAreBuiltWithTheTemplate(t *testing.T) {
	sf := loadStack(t)
	for _, p := range sf.Configuration.Copy {
		if _, err := os.Stat(filepath.Join("..", p)); err != nil {
			t.Errorf("configuration.copy names %s, which does not exist", p)
		}
	}
	for name, f := range sf.Functions {
		if f.Handler != "./functions/"+name {
			t.Errorf("%s: handler %q, want ./functions/%s", name, f.Handler, name)
		}
		var tmpl struct {
			Language string `yaml:"language"`
			Fprocess string `yaml:"fprocess"`
		}
		b, err := os.ReadFile(filepath.Join("..", "template", f.Lang, "template.yml"))
		if err != nil {
			t.Errorf("%s: lang %q has no template in template/: %v", name, f.Lang, err)
			continue
		}
		if err := yaml.Unmarshal(b, &tmpl); err != nil || tmpl.Language != f.Lang || tmpl.Fprocess == "" {
			t.Errorf("%s: template/%s/template.yml: language %q fprocess %q (%v)", name, f.Lang, tmpl.Language, tmpl.Fprocess, err)
		}
		if _, err := os.Stat(filepath.Join("..", "template", f.Lang, "Dockerfile")); err != nil {
			t.Errorf("%s: template %s has no Dockerfile", name, f.Lang)
		}
		if f.Environment["FUNCTION"] != name {
			t.Errorf("%s: environment FUNCTION=%q, want %q", name, f.Environment["FUNCTION"], name)
		}
		limits, err := f.CallLimits()
		if err != nil || limits.Timeout <= 0 || limits.MaxInflight <= 0 {
			t.Errorf("%s: needs exec_timeout and max_inflight; got %+v (%v)", name, limits, err)
		}
		if f.Labels["com.openfaas.scale.min"] == "" || f.Labels["com.openfaas.scale.max"] == "" {
			t.Errorf("%s: missing com.openfaas.scale.min/max labels", name)
		}
		if !slices.Contains(f.Secrets, "tidings-jwt-secret") || f.Environment["DATABASE_URL"] == "" {
			t.Errorf("%s: needs the JWT secret and DATABASE_URL (from the environment file)", name)
		}
	}
}

// TestDockerfileBuildsTheEntryPointFromTheCopiedModule checks the
// template's Dockerfile against the layout faas-cli gives it: every folder it
// copies from function/ is one stack.yml copies there, and the package it
// builds is the template's entry point.
func TestDockerfileBuildsTheEntryPointFromTheCopiedModule(t *testing.T) {
	sf := loadStack(t)
	b, err := os.ReadFile("../template/tidings-go/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, m := range regexp.MustCompile(`COPY function/(\S+)`).FindAllStringSubmatch(df, -1) {
		if !slices.Contains(sf.Configuration.Copy, "./"+m[1]) {
			t.Errorf("Dockerfile copies function/%s, which stack.yml's configuration.copy does not provide", m[1])
		}
	}
	m := regexp.MustCompile(`(?m)go build .* (\./\S+)\s*$`).FindStringSubmatch(strings.ReplaceAll(df, "\\\n", ""))
	if m == nil {
		t.Fatal("Dockerfile has no go build of a package")
	}
	if _, err := os.Stat(filepath.Join("..", m[1], "main.go")); err != nil {
		t.Errorf("Dockerfile builds %s, which has no main.go", m[1])
	}
	if !strings.Contains(df, "of-watchdog") || !strings.Contains(df, `mode="http"`) {
		t.Error("Dockerfile must run the handler behind of-watchdog in http mode")
	}
}

func TestComposeRunsEveryFunctionWithItsStackImage(t *testing.T) {
	sf := loadStack(t)
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Environment map[string]string `yaml:"environment"`
			Secrets     []string          `yaml:"secrets"`
			Volumes     []string          `yaml:"volumes"`
		} `yaml:"services"`
		Secrets map[string]struct {
			File string `yaml:"file"`
		} `yaml:"secrets"`
	}
	src, err := stack.Substitute(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(src), &compose); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"redis", "postgres", "migrate"} {
		if _, ok := compose.Services[svc]; !ok {
			t.Errorf("docker-compose.yml has no %s service", svc)
		}
	}
	for name, f := range sf.Functions {
		svc, ok := compose.Services[name]
		if !ok {
			t.Errorf("docker-compose.yml has no service for function %s", name)
			continue
		}
		if svc.Image != f.Image {
			t.Errorf("%s: compose image %q, stack image %q", name, svc.Image, f.Image)
		}
		if svc.Environment["FUNCTION"] != name || svc.Environment["DATABASE_URL"] == "" || svc.Environment["REDIS_URL"] == "" {
			t.Errorf("%s: compose environment %v lacks FUNCTION/DATABASE_URL/REDIS_URL", name, svc.Environment)
		}
		for _, s := range f.Secrets {
			if !slices.Contains(svc.Secrets, s) || compose.Secrets[s].File == "" {
				t.Errorf("%s: compose does not give secret %s", name, s)
			}
		}
		fn, _ := catalog.Lookup(name)
		checkDatabases(t, "docker-compose.yml "+name, fn.Participant, svc.Environment)
	}
	checkDatabases(t, "docker-compose.yml gateway-ws", "", compose.Services["gateway-ws"].Environment)
	// migrate fills all three databases, each apart from the others.
	m := compose.Services["migrate"].Environment
	dbs := []string{m["DATABASE_URL"], m["PERSIST_DATABASE_URL"], m["COUNTER_DATABASE_URL"]}
	if slices.Contains(dbs, "") || dbs[0] == dbs[1] || dbs[0] == dbs[2] || dbs[1] == dbs[2] {
		t.Errorf("docker-compose.yml migrate: the three databases %q must be set and apart", dbs)
	}
	// The postgres service creates the participants' databases.
	var initdb []byte
	for _, v := range compose.Services["postgres"].Volumes {
		if host, target, _ := strings.Cut(v, ":"); strings.HasPrefix(target, "/docker-entrypoint-initdb.d/") {
			if initdb, err = os.ReadFile(filepath.Join("..", host)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, db := range dbs[1:] {
		u, err := url.Parse(db)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(u.Path, "/")
		if !strings.Contains(string(initdb), "CREATE DATABASE "+name+";") {
			t.Errorf("docker-compose.yml: the postgres service's /docker-entrypoint-initdb.d does not create %s", name)
		}
	}
}

// TestComposeRunsTheGatewayAndObservability checks the rest of the compose
// stack against the tree: its services exist, every file it mounts
// exists, gateway-ws is built from its Dockerfile, and the compose
// Prometheus scrapes every function of stack.yml.
func TestComposeRunsTheGatewayAndObservability(t *testing.T) {
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Build struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"gateway-ws", "faas", "mail", "prometheus", "grafana"} {
		if _, ok := compose.Services[svc]; !ok {
			t.Errorf("docker-compose.yml has no %s service", svc)
		}
	}
	for name, svc := range compose.Services {
		for _, v := range svc.Volumes {
			host, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(host, "./") {
				if _, err := os.Stat(filepath.Join("..", host)); err != nil {
					t.Errorf("%s mounts %s, which does not exist", name, host)
				}
			}
		}
	}
	gw := compose.Services["gateway-ws"].Build
	df, err := os.ReadFile(filepath.Join("..", gw.Context, gw.Dockerfile))
	if err != nil || !regexp.MustCompile(`(?m)go build .* \./gateway-ws\s*$`).Match(df) {
		t.Errorf("gateway-ws's Dockerfile %s must build ./gateway-ws (%v)", gw.Dockerfile, err)
	}
	prom, err := os.ReadFile("../infra/prometheus/prometheus-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	for name := range loadStack(t).Functions {
		if !strings.Contains(string(prom), name+":8082") {
			t.Errorf("the compose Prometheus does not scrape %s", name)
		}
	}
}
