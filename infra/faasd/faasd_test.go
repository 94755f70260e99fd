// Package faasd_test checks tidings' faasd core services against faasd's
// compose rules and against stack.yml's defaults.
package faasd_test

import (
	"net/url"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

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

	for _, v := range []string{"DATABASE_URL", "REDIS_URL", "REGISTRY"} {
		t.Setenv(v, "")
	}
	sf, err := stack.Load("../../stack.yml")
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]bool{}
	for _, def := range sf.Functions {
		for _, k := range []string{"DATABASE_URL", "REDIS_URL"} {
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
