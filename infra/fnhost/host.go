// Package fnhost is the local stand-in for the OpenFaaS gateway: it serves
// every function in one process at /function/<name>, the gateway's route
// shape, each behind the timeout and concurrency limit stack.yml gives it.
package fnhost

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"

	"github.com/felixge/httpsnoop"

	"tidings/functions"
	"tidings/lib/catalog"
	"tidings/lib/fn"
	"tidings/lib/metrics"
	"tidings/lib/stack"
)

// Function is one served function: its handler and its limits.
type Function struct {
	Handler fn.Handler
	Limits  fn.Limits
}

// FromStack builds every function of the catalogue (lib/catalog) from
// deps, with the limits its stack file entry gives it. A catalogue
// function the stack file lacks, or a stack function the catalogue does
// not list, is an error: the dev host serves what is deployed.
func FromStack(f *stack.File, deps *functions.Deps) (map[string]Function, error) {
	for name := range f.Functions {
		if _, ok := catalog.Lookup(name); !ok {
			return nil, fmt.Errorf("stack.yml: function %s is not in the catalogue (lib/catalog)", name)
		}
	}
	out := make(map[string]Function, len(f.Functions))
	for _, c := range catalog.All() {
		def, ok := f.Functions[c.Name]
		if !ok {
			return nil, fmt.Errorf("stack.yml: no entry for the catalogue's function %s", c.Name)
		}
		h, err := functions.New(c.Name, deps)
		if err != nil {
			return nil, fmt.Errorf("stack.yml: %w", err)
		}
		limits, err := def.CallLimits()
		if err != nil {
			return nil, fmt.Errorf("stack.yml: function %s: %w", c.Name, err)
		}
		out[c.Name] = Function{Handler: h, Limits: limits}
	}
	return out, nil
}

// Load reads the stack file at path and builds every function in it from
// deps, as FromStack does.
func Load(path string, deps *functions.Deps) (map[string]Function, error) {
	sf, err := stack.Load(path)
	if err != nil {
		return nil, err
	}
	return FromStack(sf, deps)
}

// New returns the host's HTTP handler for fns. It serves its own metrics
// (calls and durations by function and status) at /metrics. Serve it with
// fn.NewServer, whose body deadline keeps slow clients from holding a
// connection; a function's slot is taken only once its body is read.
func New(fns map[string]Function, maxBodyBytes int64, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	reg := metrics.NewRegistry()
	observed := metrics.NewFunctions(reg)
	mux.Handle("GET /metrics", metrics.Handler(reg))
	names := make([]string, 0, len(fns))
	for name, f := range fns {
		names = append(names, name)
		flog := log.With("function", name)
		adapter := &fn.Adapter{Handler: f.Handler, MaxBodyBytes: maxBodyBytes, Limits: f.Limits, Log: flog}
		h := accessLog(observed.Observe(name, adapter), flog)
		mux.Handle("/function/"+name, h)
		mux.Handle("/function/"+name+"/", h)
	}
	sort.Strings(names)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /system/functions", func(w http.ResponseWriter, r *http.Request) {
		list := make([]map[string]string, len(names))
		for i, n := range names {
			list[i] = map[string]string{"name": n}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(list)
	})
	// The OpenFaaS gateway's status route, which gateway-ws health-checks.
	mux.HandleFunc("GET /system/function/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if _, ok := fns[name]; !ok {
			fn.WriteError(w, fn.NotFound("no function named %s", name))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"name": name, "replicas": 1, "availableReplicas": 1})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fn.WriteError(w, fn.NotFound("no function at %s", r.URL.Path))
	})
	return fn.Routes(mux)
}

// accessLog logs one line per call: never the body, query or headers,
// which can carry passwords and tokens.
func accessLog(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(fn.CallIDHeader) == "" {
			r.Header.Set(fn.CallIDHeader, rand.Text())
		}
		got := httpsnoop.CaptureMetrics(next, w, r)
		log.Info("call", "method", r.Method, "status", got.Code,
			"duration_ms", got.Duration.Milliseconds(), "call_id", r.Header.Get(fn.CallIDHeader))
	})
}
