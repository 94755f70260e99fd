// Package k8s_test renders the Kubernetes manifests with `kubectl
// kustomize` (offline) and checks them: every object decodes strictly
// into its k8s.io/api type, and gateway-ws's probes, ports, secret mounts,
// environment and termination agree with gateway-ws's own configuration.
package k8s_test

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"tidings/gateway-ws/gateway"
	"tidings/lib/catalog"
	"tidings/lib/config"
)

// rendered is one overlay's objects, by kind.
type rendered struct {
	deployments []appsv1.Deployment
	services    []corev1.Service
	configMaps  []corev1.ConfigMap
	pdbs        []policyv1.PodDisruptionBudget
	hpas        []autoscalingv2.HorizontalPodAutoscaler
	ingresses   []networkingv1.Ingress
}

// render runs `kubectl kustomize dir` and decodes every object strictly:
// a field the API type does not have fails the test.
func render(t *testing.T, dir string) rendered {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatal("kubectl is not installed (infra/test-services.sh installs Debian's kubernetes-client)")
	}
	out, err := exec.Command(kubectl, "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	var r rendered
	for i, doc := range bytes.Split(out, []byte("\n---\n")) {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s object %d: %v", dir, i, err)
		}
		var err error
		switch meta.APIVersion + " " + meta.Kind {
		case "apps/v1 Deployment":
			err = decodeStrict(doc, &r.deployments)
		case "v1 Service":
			err = decodeStrict(doc, &r.services)
		case "v1 ConfigMap":
			err = decodeStrict(doc, &r.configMaps)
		case "policy/v1 PodDisruptionBudget":
			err = decodeStrict(doc, &r.pdbs)
		case "autoscaling/v2 HorizontalPodAutoscaler":
			err = decodeStrict(doc, &r.hpas)
		case "networking.k8s.io/v1 Ingress":
			err = decodeStrict(doc, &r.ingresses)
		default:
			t.Fatalf("%s object %d: unexpected %s %s", dir, i, meta.APIVersion, meta.Kind)
		}
		if err != nil {
			t.Errorf("%s: %s does not decode strictly: %v", dir, meta.Kind, err)
		}
	}
	return r
}

// envFrom is the environment a container takes from the rendered
// ConfigMaps it names.
func (r rendered) envFrom(t *testing.T, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		i := slices.IndexFunc(r.configMaps, func(m corev1.ConfigMap) bool {
			return from.ConfigMapRef != nil && m.Name == from.ConfigMapRef.Name
		})
		if i < 0 {
			t.Errorf("%s: envFrom %+v is not a rendered ConfigMap", c.Name, from)
			continue
		}
		maps.Copy(env, r.configMaps[i].Data)
	}
	return env
}

// checkMigrations: an init container runs the migrations with all three
// databases, each apart from the others.
func checkMigrations(t *testing.T, r rendered, init []corev1.Container) {
	t.Helper()
	i := slices.IndexFunc(init, func(c corev1.Container) bool { return slices.Equal(c.Command, []string{"tidings-migrate"}) })
	if i < 0 {
		t.Fatal("no init container runs tidings-migrate")
	}
	env := r.envFrom(t, init[i])
	dbs := []string{env["DATABASE_URL"], env["PERSIST_DATABASE_URL"], env["COUNTER_DATABASE_URL"]}
	if slices.Contains(dbs, "") || dbs[0] == dbs[1] || dbs[0] == dbs[2] || dbs[1] == dbs[2] {
		t.Errorf("the migrations' databases %q must be three, each set", dbs)
	}
}

// decodeStrict decodes one object into a new element of list; a field
// its type does not have is an error.
func decodeStrict[T any](doc []byte, list *[]T) error {
	var v T
	err := yaml.UnmarshalStrict(doc, &v)
	*list = append(*list, v)
	return err
}

// TestManifestsDecodeStrictly shows the decoding the other test relies on
// refuses a misspelt field that kustomize passes through.
func TestManifestsDecodeStrictly(t *testing.T) {
	bad := t.TempDir()
	for name, body := range map[string]string{
		"kustomization.yaml": "resources: [svc.yaml]\n",
		"svc.yaml":           "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 1}]\n  sessionAfinity: ClientIP\n",
	} {
		if err := os.WriteFile(filepath.Join(bad, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("kubectl", "kustomize", bad).Output()
	if err != nil {
		t.Fatal(err)
	}
	var svcs []corev1.Service
	if err := decodeStrict(out, &svcs); err == nil || !strings.Contains(err.Error(), "sessionAfinity") {
		t.Errorf("a misspelt field must fail strict decoding; got %v", err)
	}
}

// TestGatewayManifestsMatchGatewayConfig renders each overlay and checks
// the gateway against the configuration gateway-ws reads from the very
// environment and secret files the manifests give it.
func TestGatewayManifestsMatchGatewayConfig(t *testing.T) {
	for _, overlay := range []string{"overlays/dev", "overlays/production"} {
		t.Run(overlay, func(t *testing.T) {
			r := render(t, overlay)
			if len(r.deployments) != 1 || len(r.services) != 1 || len(r.pdbs) != 1 || len(r.hpas) != 1 || len(r.configMaps) != 2 {
				t.Fatalf("want one Deployment, Service, PDB and HPA and two ConfigMaps; got %d %d %d %d %d",
					len(r.deployments), len(r.services), len(r.pdbs), len(r.hpas), len(r.configMaps))
			}
			checkGateway(t, r)
		})
	}
}

func checkGateway(t *testing.T, r rendered) {
	d := r.deployments[0]
	pod := d.Spec.Template
	var c *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == "gateway-ws" {
			c = &pod.Spec.Containers[i]
		}
	}
	if c == nil {
		t.Fatal("no gateway-ws container")
	}

	// The container's environment: its env, then its ConfigMaps. Only
	// the migrations get the participants' databases.
	env := r.envFrom(t, *c)
	if err := catalog.CheckParticipantEnv("", func(k string) bool { return env[k] != "" }); err != nil {
		t.Errorf("gateway-ws container: %v", err)
	}
	checkMigrations(t, r, pod.Spec.InitContainers)
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "from-secret:" + e.ValueFrom.SecretKeyRef.Name
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			env[e.Name] = "10.1.2.3" // a pod IP, as the kubelet gives it
		default:
			t.Errorf("env %s: only literal values, the pod IP and secret references are checked", e.Name)
		}
		// The kubelet expands $(NAME) of the variables defined before.
		for name, value := range env {
			if name != e.Name && strings.Contains(env[e.Name], "$("+name+")") {
				env[e.Name] = strings.ReplaceAll(env[e.Name], "$("+name+")", value)
			}
		}
	}
	// Long-poll requests are proxied to the replica holding the session,
	// at the address it advertises: one its peers can reach.
	if host, _, err := net.SplitHostPort(env["NODE_ADDR"]); err != nil || net.ParseIP(host) == nil {
		t.Errorf("NODE_ADDR %q: want the pod IP and port, which peers reach (a pod name does not resolve)", env["NODE_ADDR"])
	}
	if !strings.HasPrefix(env["FAAS_BASIC_AUTH"], "from-secret:") {
		t.Error("FAAS_BASIC_AUTH must come from a secret: without it every health check of /system/function/<name> is refused")
	}

	// The secrets as mounted: the files lib/config reads from SECRETS_DIR.
	secretsDir := env["SECRETS_DIR"]
	if secretsDir == "" {
		secretsDir = config.DefaultSecretsDir
	}
	var mounted []string
	var required []string
	for _, m := range c.VolumeMounts {
		if m.MountPath != secretsDir {
			continue
		}
		for _, v := range pod.Spec.Volumes {
			if v.Name != m.Name || v.Projected == nil {
				continue
			}
			for _, src := range v.Projected.Sources {
				if src.Secret == nil {
					continue
				}
				for _, item := range src.Secret.Items {
					mounted = append(mounted, item.Path)
					if src.Secret.Optional == nil || !*src.Secret.Optional {
						required = append(required, item.Path)
					}
				}
			}
		}
	}
	for _, s := range []string{config.JWTSecret, config.InternalKey} {
		if !slices.Contains(required, s) {
			t.Errorf("secret %s is not mounted (required) in %s, where lib/config reads it; mounted %v", s, secretsDir, mounted)
		}
	}

	// gateway-ws's own reading of that environment and those files.
	files := t.TempDir()
	for _, s := range mounted {
		if err := os.WriteFile(filepath.Join(files, s), []byte(strings.Repeat("k", 40)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	t.Setenv("SECRETS_DIR", files)
	t.Setenv("JWT_SECRET", "")
	t.Setenv("INTERNAL_KEY", "")
	cfg := gateway.DefaultConfig()
	err := config.Parse(&cfg)
	if err == nil {
		err = cfg.Complete()
	}
	if err != nil {
		t.Fatalf("gateway-ws refuses the manifests' configuration: %v", err)
	}
	if cfg.FaaSURL != "http://gateway.openfaas:8080" {
		t.Errorf("FAAS_URL %q: the functions are reached through the OpenFaaS gateway service", cfg.FaaSURL)
	}
	_, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		t.Fatalf("GATEWAY_ADDR %q: %v", cfg.Addr, err)
	}

	// Ports and probes.
	var http *corev1.ContainerPort
	for i := range c.Ports {
		if fmt.Sprint(c.Ports[i].ContainerPort) == port {
			http = &c.Ports[i]
		}
	}
	if http == nil {
		t.Fatalf("no container port %s (GATEWAY_ADDR %s); ports %+v", port, cfg.Addr, c.Ports)
	}
	probePort := func(name string, p *corev1.Probe) string {
		if p == nil {
			t.Errorf("no %s probe", name)
			return ""
		}
		switch {
		case p.HTTPGet != nil:
			return p.HTTPGet.Port.String()
		case p.TCPSocket != nil:
			return p.TCPSocket.Port.String()
		}
		t.Errorf("%s probe is neither HTTP nor TCP", name)
		return ""
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("readiness probe %+v: want GET /healthz", c.ReadinessProbe)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if got := probePort(name, p); got != http.Name && got != port {
			t.Errorf("%s probe port %q: want %s (%s)", name, got, http.Name, port)
		}
	}
	if pod.Annotations["prometheus.io/scrape"] != "true" || pod.Annotations["prometheus.io/port"] != port || pod.Annotations["prometheus.io/path"] != "/metrics" {
		t.Errorf("Prometheus annotations %v: want scrape of :%s/metrics", pod.Annotations, port)
	}

	// Termination: the preStop pause plus the SIGTERM drain fit the grace.
	var preStop time.Duration
	if l := c.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Exec != nil && len(l.PreStop.Exec.Command) == 2 {
		preStop, _ = time.ParseDuration(l.PreStop.Exec.Command[1] + "s")
	}
	var grace time.Duration
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace < preStop+cfg.ShutdownTimeout+time.Second {
		t.Errorf("terminationGracePeriodSeconds %v < preStop %v + SHUTDOWN_TIMEOUT %v: the drain would be killed", grace, preStop, cfg.ShutdownTimeout)
	}

	// The Service, PDB and HPA point at this Deployment's pods.
	labels := pod.Labels
	matches := func(sel map[string]string) bool {
		if len(sel) == 0 {
			return false
		}
		for k, v := range sel {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
	svc := r.services[0]
	if !matches(svc.Spec.Selector) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, labels)
	}
	if len(svc.Spec.Ports) != 1 || (svc.Spec.Ports[0].TargetPort.String() != http.Name && svc.Spec.Ports[0].TargetPort.String() != port) {
		t.Errorf("Service ports %+v: want one to the gateway's port", svc.Spec.Ports)
	}
	if pdb := r.pdbs[0]; pdb.Spec.Selector == nil || !matches(pdb.Spec.Selector.MatchLabels) {
		t.Errorf("PodDisruptionBudget does not select the pods")
	}
	if hpa := r.hpas[0]; hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != d.Name {
		t.Errorf("HPA scales %+v, not the Deployment %s", hpa.Spec.ScaleTargetRef, d.Name)
	}
	for _, ing := range r.ingresses {
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				if p.Backend.Service == nil || p.Backend.Service.Name != svc.Name {
					t.Errorf("Ingress path %s does not reach Service %s", p.Path, svc.Name)
				}
			}
		}
	}
}
