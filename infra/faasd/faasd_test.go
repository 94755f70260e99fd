// Package faasd_test checks tidings' faasd core services against faasd's
// compose rules and against stack.yml's defaults.
package faasd_test

import (
	"net/url"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/stack"
)

type service struct {
	Image       string   `yaml:"image"`
	Command     []string `yaml:"command"`
	Environment []string `yaml:"environment"`
	Volumes     []struct {
		Type   string `yaml:"type"`
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	} `yaml:"volumes"`
	DependsOn []string `yaml:"depends_on"`
}

func env(s service) map[string]string {
	out := map[string]string{}
	for _, kv := range s.Environment {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = v
	}
	return out
}

// TestCoreServicesServeWhatTheFunctionsExpect: the fragment uses only
// what faasd's compose loader supports (bind mounts), Redis keeps an AOF,
// gateway-ws mounts faas-cli's secrets where lib/config reads them and
// reaches the OpenFaaS gateway by its core service name, and the hosts
// stack.yml's defaults name are core services here (faasd resolves them
// through its hosts file).
func TestCoreServicesServeWhatTheFunctionsExpect(t *testing.T) {
	b, err := os.ReadFile("docker-compose.tidings.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var services map[string]service
	if err := yaml.Unmarshal(b, &services); err != nil {
		t.Fatalf("the fragment does not parse: %v", err)
	}
	for name, s := range services {
		for _, v := range s.Volumes {
			if v.Type != "bind" {
				t.Errorf("%s: volume type %q; faasd supports only bind", name, v.Type)
			}
		}
	}
	if r := services["redis"]; !slices.Contains(r.Command, "--appendonly") || r.Command[slices.Index(r.Command, "--appendonly")+1] != "yes" {
		t.Errorf("redis must run with AOF: %v", r.Command)
	}

	gw, ok := services["gateway-ws"]
	if !ok {
		t.Fatal("no gateway-ws service")
	}
	genv := env(gw)
	if genv["FAAS_URL"] != "http://gateway:8080" || genv["FAAS_BASIC_AUTH"] == "" {
		t.Errorf("gateway-ws must reach the OpenFaaS gateway at http://gateway:8080 with its basic auth: %v", genv)
	}
	if !strings.Contains(strings.Join(gw.Command, " "), "tidings-migrate") {
		t.Errorf("gateway-ws must run the migrations first: %v", gw.Command)
	}
	if err := catalog.CheckParticipantEnv("", func(k string) bool { return genv[k] != "" }); err != nil {
		t.Errorf("gateway-ws: %v", err)
	}
	checkParticipantDatabases(t, services, strings.Join(gw.Command, " "))
	dir := genv["SECRETS_DIR"]
	if dir == "" {
		dir = config.DefaultSecretsDir
	}
	for _, s := range []string{config.JWTSecret, config.InternalKey} {
		found := false
		for _, v := range gw.Volumes {
			if v.Target == path.Join(dir, s) && v.Source == "/var/lib/faasd-provider/secrets/openfaas-fn/"+s {
				found = true
			}
		}
		if !found {
			t.Errorf("gateway-ws does not mount faas-cli's secret %s at %s", s, path.Join(dir, s))
		}
	}

	for _, v := range []string{"DATABASE_URL", "PERSIST_DATABASE_URL", "COUNTER_DATABASE_URL", "REDIS_URL", "REGISTRY"} {
		t.Setenv(v, "")
	}
	sf, err := stack.Load("../../stack.yml")
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]bool{}
	for _, def := range sf.Functions {
		for _, k := range []string{"DATABASE_URL", "PERSIST_DATABASE_URL", "COUNTER_DATABASE_URL", "REDIS_URL"} {
			if def.Environment[k] == "" {
				continue // a function of neither participant
			}
			u, err := url.Parse(def.Environment[k])
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			hosts[u.Hostname()] = true
		}
	}
	for _, k := range []string{"DATABASE_URL", "REDIS_URL"} {
		u, err := url.Parse(genv[k])
		if err != nil {
			t.Fatalf("gateway-ws %s: %v", k, err)
		}
		hosts[u.Hostname()] = true
	}
	for h := range hosts {
		if _, ok := services[h]; !ok {
			t.Errorf("host %q (stack.yml default or gateway-ws) is not a core service faasd resolves", h)
		}
	}
}

// checkParticipantDatabases: the migrations in gateway-ws's command are
// given each participant's database, and the postgres service creates
// those databases from the file install.sh puts where it mounts it.
func checkParticipantDatabases(t *testing.T, services map[string]service, command string) {
	t.Helper()
	install, err := os.ReadFile("install.sh")
	if err != nil {
		t.Fatal(err)
	}
	var initdb []byte
	for _, v := range services["postgres"].Volumes {
		if !strings.HasPrefix(v.Target, "/docker-entrypoint-initdb.d/") {
			continue
		}
		// install.sh: cp <file in the repository> "$FAASD/<source>"
		m := regexp.MustCompile(`cp (\S+) "\$FAASD/` + regexp.QuoteMeta(strings.TrimPrefix(v.Source, "./")) + `"`).FindSubmatch(install)
		if m == nil {
			t.Fatalf("install.sh does not put the postgres init file at %s", v.Source)
		}
		if initdb, err = os.ReadFile("../../" + string(m[1])); err != nil {
			t.Fatal(err)
		}
	}
	for _, env := range catalog.ParticipantEnv {
		m := regexp.MustCompile(env + `='?(postgres://[^' ]+)`).FindStringSubmatch(command)
		if m == nil {
			t.Errorf("gateway-ws's migrations are not given %s: %s", env, command)
			continue
		}
		u, err := url.Parse(m[1])
		if err != nil {
			t.Fatal(err)
		}
		if db := path.Base(u.Path); !strings.Contains(string(initdb), "CREATE DATABASE "+db+";") {
			t.Errorf("%s names database %s, which the postgres service does not create", env, db)
		}
	}
}
