// Package stack reads the OpenFaaS stack file (stack.yml), the one place a
// function's deployment settings live, so the local host applies the same
// timeouts and concurrency limits as of-watchdog does in a cluster.
package stack

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

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
	Environment     map[string]string `yaml:"environment"`
	Secrets         []string          `yaml:"secrets"`
	Labels          map[string]string `yaml:"labels"`
	Annotations     map[string]string `yaml:"annotations"`
	Limits          map[string]string `yaml:"limits"`
	Requests        map[string]string `yaml:"requests"`
}

// Load parses a stack file the way faas-cli does: ${VAR} and
// ${VAR:-default} substituted from the environment, and each function's
// environment_file merged under its own environment.
func Load(path string) (*File, error) {
	var f File
	if err := readYAML(path, &f); err != nil {
		return nil, err
	}
	for name, fn := range f.Functions {
		env := map[string]string{}
		for _, file := range fn.EnvironmentFile {
			var ef struct {
				Environment map[string]string `yaml:"environment"`
			}
			if err := readYAML(filepath.Join(filepath.Dir(path), file), &ef); err != nil {
				return nil, fmt.Errorf("function %s: %w", name, err)
			}
			maps.Copy(env, ef.Environment)
		}
		maps.Copy(env, fn.Environment)
		fn.Environment = env
		f.Functions[name] = fn
	}
	return &f, nil
}

func readYAML(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %w", err)
	}
	if err := yaml.Unmarshal([]byte(Substitute(string(b))), v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

var envVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}`)

// Substitute replaces ${VAR} and ${VAR:-default} with values from the
// environment, as faas-cli's envsubst does.
func Substitute(s string) string {
	return envVar.ReplaceAllStringFunc(s, func(m string) string {
		parts := envVar.FindStringSubmatch(m)
		if v := os.Getenv(parts[1]); v != "" {
			return v
		}
		return parts[2]
	})
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
