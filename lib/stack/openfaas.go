package stack

// The rules OpenFaaS Community Edition applies to a deployment, as its
// source has them, checked before anything is deployed.
//
// Sources followed:
//   - openfaas/faas-netes at 662ce9ce, pkg/handlers/validate.go: scale.max
//     and scale.min above MaxReplicas are refused; scale.zero=true,
//     scale.zero-duration, scale.target and scale.type are Pro-only; an
//     image must answer an anonymous manifest HEAD (isAnonymous).
//   - faas-netes pkg/handlers/replica_reader.go: MaxReplicas = 5,
//     MaxFunctions = 15; pkg/k8s/secrets.go: "Required secret ... was not
//     found in the cluster".
//   - openfaas/faasd at 13f03f3, pkg/provider/handlers/info.go
//     (faasdMaxFunctions = 15) and deploy.go (validateSecrets: "unable to
//     find secret").
//   - openfaas/faas-cli commands/new_function.go: `faas-cli new --lang L`
//     reads template/L/template.yml and copies its handler_folder
//     (default "function") to the new function's handler.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

const (
	// CEMaxReplicas is the largest com.openfaas.scale.min/max OpenFaaS CE
	// accepts (faas-netes MaxReplicas).
	CEMaxReplicas = 5
	// CEMaxFunctions is how many functions OpenFaaS CE and faasd CE deploy
	// (faas-netes MaxFunctions, faasd faasdMaxFunctions).
	CEMaxFunctions = 15
)

// proOnlyLabels are the scaling labels Community Edition refuses outright.
var proOnlyLabels = []string{"com.openfaas.scale.zero-duration", "com.openfaas.scale.target", "com.openfaas.scale.type"}

// CommunityEditionProblems lists every reason OpenFaaS CE would refuse to
// deploy a function of f as it is (the function count aside: see
// CEMaxFunctions), plus environment files faas-cli would deploy with a
// literal "${...}" in them. Images are checked with PublicImage.
func (f *File) CommunityEditionProblems() []error {
	var errs []error
	for _, name := range f.names() {
		def := f.Functions[name]
		for _, label := range []string{"com.openfaas.scale.min", "com.openfaas.scale.max"} {
			if v, ok := def.Labels[label]; ok {
				if n, err := strconv.Atoi(v); err == nil && n > CEMaxReplicas {
					errs = append(errs, fmt.Errorf("%s: %s=%d: Community Edition allows at most %d", name, label, n, CEMaxReplicas))
				}
			}
		}
		if def.Labels["com.openfaas.scale.zero"] == "true" {
			errs = append(errs, fmt.Errorf("%s: com.openfaas.scale.zero=true is not available in Community Edition", name))
		}
		for _, label := range proOnlyLabels {
			if _, ok := def.Labels[label]; ok {
				errs = append(errs, fmt.Errorf("%s: %s is not available in Community Edition", name, label))
			}
		}
		if err := PublicImage(def.Image); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	files := make([]string, 0, len(f.EnvironmentFiles))
	for file := range f.EnvironmentFiles {
		files = append(files, file)
	}
	sort.Strings(files)
	for _, file := range files {
		for k, v := range f.EnvironmentFiles[file] {
			if strings.Contains(v, "$") {
				errs = append(errs, fmt.Errorf("environment_file %s: %s=%q: faas-cli does not substitute variables in environment files; set it inline in stack.yml", file, k, v))
			}
		}
	}
	return errs
}

// MissingSecrets lists the secrets a function uses that created does not
// hold: faasd and faas-netes refuse such a deployment.
func (f *File) MissingSecrets(created []string) []error {
	var errs []error
	for _, name := range f.names() {
		for _, s := range f.Functions[name].Secrets {
			if !slices.Contains(created, s) {
				errs = append(errs, fmt.Errorf("%s uses secret %s, which the recipe does not create", name, s))
			}
		}
	}
	return errs
}

func (f *File) names() []string {
	names := make([]string, 0, len(f.Functions))
	for name := range f.Functions {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// PublicImage refuses an image reference that a fresh push would not make
// anonymously pullable, which Community Edition requires: only Docker Hub
// creates public repositories by default (GHCR, Quay, ECR and GCR create
// private ones), and CE also takes a registry on the loopback address.
func PublicImage(ref string) error {
	if ref == "" || strings.Contains(ref, "$") {
		return fmt.Errorf("image %q is not a complete reference", ref)
	}
	host := "docker.io"
	if first, _, ok := strings.Cut(ref, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		host = first
	}
	hostname, _, _ := strings.Cut(host, ":")
	switch hostname {
	case "docker.io", "index.docker.io", "registry-1.docker.io", "localhost", "127.0.0.1":
		return nil
	}
	return fmt.Errorf("image %q: registry %s makes new repositories private, and Community Edition deploys only public images; use docker.io", ref, host)
}

// Template is a template's template.yml, the fields faas-cli reads.
type Template struct {
	Language      string `yaml:"language"`
	FProcess      string `yaml:"fprocess"`
	HandlerFolder string `yaml:"handler_folder"`
}

// CheckTemplate checks that dir (template/<lang>) is a template faas-cli
// can build with and create functions from: template.yml naming the
// language and the process, a Dockerfile, and the handler folder
// `faas-cli new` copies.
func CheckTemplate(dir string) error {
	lang := filepath.Base(dir)
	b, err := os.ReadFile(filepath.Join(dir, "template.yml"))
	if err != nil {
		return fmt.Errorf("template %s: %w", lang, err)
	}
	var t Template
	if err := yaml.Unmarshal(b, &t); err != nil {
		return fmt.Errorf("template %s: template.yml: %w", lang, err)
	}
	var errs []error
	if t.Language != lang {
		errs = append(errs, fmt.Errorf("template %s: template.yml names language %q", lang, t.Language))
	}
	if t.FProcess == "" {
		errs = append(errs, fmt.Errorf("template %s: template.yml has no fprocess", lang))
	}
	if _, err := os.Stat(filepath.Join(dir, "Dockerfile")); err != nil {
		errs = append(errs, fmt.Errorf("template %s: no Dockerfile", lang))
	}
	folder := t.HandlerFolder
	if folder == "" {
		folder = "function"
	}
	entries, err := os.ReadDir(filepath.Join(dir, folder))
	if err != nil || len(entries) == 0 {
		errs = append(errs, fmt.Errorf("template %s: no %s/ folder with a starter handler for `faas-cli new --lang %s`", lang, folder, lang))
	}
	return errors.Join(errs...)
}
