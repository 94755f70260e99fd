// Package stack reads the OpenFaaS stack file (stack.yml), the one place a
// function's deployment settings live, with faas-cli's own semantics, so
// the local host applies what `faas-cli deploy` would deploy.
//
// Sources followed (openfaas/faas-cli at c8191b71):
//   - vendor/github.com/openfaas/go-sdk/stack/stack.go: ParseYAMLData runs
//     drone/envsubst over stack.yml itself (os.LookupEnv, unset is "").
//   - commands/deploy.go: readFiles reads each environment_file with plain
//     yaml.Unmarshal (no substitution), later files over earlier ones, and
//     compileEnvironment merges them OVER the inline environment.
//   - vendor/github.com/openfaas/go-sdk/stack/schema.go: the field names.
//
// Where the dev host (`make up`, infra/fnhost) differs from a deployment,
// on purpose: it takes only each function's exec_timeout and max_inflight
// from the merged environment (Function.CallLimits); the connection
// settings stack.yml defaults to faasd's service names come from its own
// process environment instead, because `make up` starts or finds
// PostgreSQL and Redis on loopback. infra/fnhost's tests serve stack.yml's
// functions with its limits against the test servers.
package stack

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"

	"github.com/drone/envsubst"
	"gopkg.in/yaml.v3"

	"tidings/lib/config"
	"tidings/lib/fn"
)

// File is the part of stack.yml tidings uses.
type File struct {
	Version       string              `yaml:"version"`
	Provider      Provider            `yaml:"provider"`
	Functions     map[string]Function `yaml:"functions"`
	Configuration struct {
		Templates []struct {
			Name string `yaml:"name"`
		} `yaml:"templates"`
		Copy []string `yaml:"copy"`
	} `yaml:"configuration"`

	// EnvironmentFiles holds every environment_file the functions name,
	// by the path stack.yml gives, as faas-cli reads it: unsubstituted.
	EnvironmentFiles map[string]map[string]string `yaml:"-"`
}

// Provider is the stack's provider section.
type Provider struct {
	Name    string `yaml:"name"`
	Gateway string `yaml:"gateway"`
}

// Function is one function's entry.
type Function struct {
	Lang            string            `yaml:"lang"`
	EnvironmentFile []string          `yaml:"environment_file"`
	Handler         string            `yaml:"handler"`
	Image           string            `yaml:"image"`
	Environment     map[string]string `yaml:"environment"` // after Load: inline, then the files over it
	Secrets         []string          `yaml:"secrets"`
	Labels          map[string]string `yaml:"labels"`
	Annotations     map[string]string `yaml:"annotations"`
	Limits          map[string]string `yaml:"limits"`
	Requests        map[string]string `yaml:"requests"`
}

// Load parses a stack file the way faas-cli does: ${VAR} and
// ${VAR:-default} substituted from the environment in stack.yml only, and
// each function's environment_file merged OVER its inline environment,
// literally. faas-cli opens environment files relative to its working
// directory; Load opens them relative to the stack file, the same place
// when faas-cli runs from the repository root.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %w", err)
	}
	src, err := Substitute(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var f File
	if err := yaml.Unmarshal([]byte(src), &f); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	f.EnvironmentFiles = map[string]map[string]string{}
	for name, def := range f.Functions {
		env := maps.Clone(def.Environment)
		if env == nil {
			env = map[string]string{}
		}
		for _, file := range def.EnvironmentFile {
			fileEnv, ok := f.EnvironmentFiles[file]
			if !ok {
				if fileEnv, err = readEnvironmentFile(filepath.Join(filepath.Dir(path), file)); err != nil {
					return nil, fmt.Errorf("function %s: %w", name, err)
				}
				f.EnvironmentFiles[file] = fileEnv
			}
			maps.Copy(env, fileEnv)
		}
		def.Environment = env
		f.Functions[name] = def
	}
	return &f, nil
}

func readEnvironmentFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %w", err)
	}
	var ef struct {
		Environment map[string]string `yaml:"environment"`
	}
	if err := yaml.Unmarshal(b, &ef); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return ef.Environment, nil
}

// Substitute replaces ${VAR}, ${VAR:-default} and the other shell forms
// with values from the environment, with the library faas-cli uses.
func Substitute(s string) (string, error) {
	out, err := envsubst.EvalEnv(s)
	if err != nil {
		return "", fmt.Errorf("substitute variables: %w", err)
	}
	return out, nil
}

// CallLimits reads the function's of-watchdog settings: exec_timeout and
// max_inflight from its environment.
func (f Function) CallLimits() (fn.Limits, error) {
	var l fn.Limits
	if v := f.Environment["exec_timeout"]; v != "" {
		d, err := config.ParseDuration(v)
		if err != nil {
			return l, fmt.Errorf("exec_timeout: %w", err)
		}
		l.Timeout = d
	}
	if v := f.Environment["max_inflight"]; v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return l, fmt.Errorf("max_inflight: not a count: %q", v)
		}
		l.MaxInflight = n
	}
	return l, nil
}
