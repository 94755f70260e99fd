// Package aws_test checks the AWS SAM template against the function
// catalogue and stack.yml.
package aws_test

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"testing"

	"gopkg.in/yaml.v3"

	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/stack"
)

type samFunction struct {
	Type       string `yaml:"Type"`
	Properties struct {
		FunctionName string `yaml:"FunctionName"`
		Timeout      int    `yaml:"Timeout"`
		MemorySize   int    `yaml:"MemorySize"`
		Environment  struct {
			Variables map[string]any `yaml:"Variables"`
		} `yaml:"Environment"`
		Events map[string]struct {
			Type       string `yaml:"Type"`
			Properties struct {
				ApiID                map[string]string `yaml:"ApiId"`
				Path                 string            `yaml:"Path"`
				Method               string            `yaml:"Method"`
				PayloadFormatVersion string            `yaml:"PayloadFormatVersion"`
			} `yaml:"Properties"`
		} `yaml:"Events"`
	} `yaml:"Properties"`
}

type samTemplate struct {
	Transform string `yaml:"Transform"`
	Globals   struct {
		Function struct {
			Runtime     string `yaml:"Runtime"`
			Handler     string `yaml:"Handler"`
			CodeURI     string `yaml:"CodeUri"`
			Environment struct {
				Variables map[string]any `yaml:"Variables"`
			} `yaml:"Environment"`
		} `yaml:"Function"`
	} `yaml:"Globals"`
	Resources map[string]yaml.Node `yaml:"Resources"`
}

// TestSAMTemplateDeploysExactlyTheCatalogue: the template parses, and its
// Lambda functions are exactly the catalogue's (catalog.Names), each
// with FUNCTION naming it, an HTTP API route at /function/<name> in
// payload format 2.0, its stack.yml exec_timeout as Timeout, and every
// secret its stack.yml entry uses in the environment fallback lib/config
// reads. A function added to the catalogue fails here until it has its
// resource in infra/aws/template.yaml.
func TestSAMTemplateDeploysExactlyTheCatalogue(t *testing.T) {
	b, err := os.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tmpl samTemplate
	if err := yaml.Unmarshal(b, &tmpl); err != nil {
		t.Fatalf("template.yaml does not parse: %v", err)
	}
	if tmpl.Transform != "AWS::Serverless-2016-10-31" || tmpl.Globals.Function.Handler != "bootstrap" || tmpl.Globals.Function.Runtime != "provided.al2023" {
		t.Errorf("not a SAM template of provided.al2023 bootstrap functions: %q %q %q", tmpl.Transform, tmpl.Globals.Function.Runtime, tmpl.Globals.Function.Handler)
	}
	if _, ok := tmpl.Resources["HttpApi"]; !ok {
		t.Fatal("no HttpApi resource")
	}
	t.Setenv("REGISTRY", "")
	sf, err := stack.Load("../../stack.yml")
	if err != nil {
		t.Fatal(err)
	}

	var deployed []string
	for id, node := range tmpl.Resources {
		var kind struct {
			Type string `yaml:"Type"`
		}
		if err := node.Decode(&kind); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if kind.Type != "AWS::Serverless::Function" {
			continue
		}
		var f samFunction
		if err := node.Decode(&f); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		name, _ := f.Properties.Environment.Variables["FUNCTION"].(string)
		deployed = append(deployed, name)
		def, ok := sf.Functions[name]
		if !ok {
			t.Errorf("%s: FUNCTION=%q is not in stack.yml", id, name)
			continue
		}
		if f.Properties.FunctionName != "tidings-"+name {
			t.Errorf("%s: FunctionName %q, want tidings-%s", id, f.Properties.FunctionName, name)
		}
		ev, ok := f.Properties.Events["Http"]
		if !ok || ev.Type != "HttpApi" || ev.Properties.Path != "/function/"+name || ev.Properties.Method != "ANY" ||
			ev.Properties.PayloadFormatVersion != "2.0" || ev.Properties.ApiID["Ref"] != "HttpApi" {
			t.Errorf("%s: route %+v, want HttpApi ANY /function/%s in payload format 2.0 on HttpApi", id, ev, name)
		}
		limits, err := def.CallLimits()
		if err != nil {
			t.Fatal(err)
		}
		if want := int(limits.Timeout.Seconds()); f.Properties.Timeout != want {
			t.Errorf("%s: Timeout %d, stack.yml exec_timeout %ds", id, f.Properties.Timeout, want)
		}
		env := maps.Clone(tmpl.Globals.Function.Environment.Variables)
		maps.Copy(env, f.Properties.Environment.Variables)
		for _, s := range def.Secrets {
			if env[config.SecretEnv(s)] == nil {
				t.Errorf("%s: uses secret %s, but $%s is not set", id, s, config.SecretEnv(s))
			}
		}
		for _, k := range []string{"DATABASE_URL", "REDIS_URL"} {
			if env[k] == nil {
				t.Errorf("%s: no %s", id, k)
			}
		}
		// Each participant's function its own database's parameter, and
		// no other participant's.
		fn, _ := catalog.Lookup(name)
		if err := catalog.CheckParticipantEnv(fn.Participant, func(k string) bool { return env[k] != nil }); err != nil {
			t.Errorf("%s: %v", id, err)
		}
		if k := catalog.ParticipantEnv[fn.Participant]; k != "" && fmt.Sprint(env[k]) == fmt.Sprint(env["DATABASE_URL"]) {
			t.Errorf("%s: %s is DATABASE_URL's parameter: the participant's database is its own", id, k)
		}
	}
	slices.Sort(deployed)
	if want := catalog.Names(); !slices.Equal(deployed, want) {
		t.Errorf("template.yaml deploys %v\nthe catalogue is       %v\n(add a resource for each missing function: %v)", deployed, want, missing(want, deployed))
	}
}

func missing(want, got []string) string {
	var out []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			out = append(out, w)
		}
	}
	return fmt.Sprint(out)
}
