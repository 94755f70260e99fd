// Command handler is the entry point of the tidings-go OpenFaaS template: it
// serves the one function named by $FUNCTION. Under of-watchdog (http mode)
// it is the upstream on $UPSTREAM_PORT with /_/health; on AWS Lambda
// (AWS_LAMBDA_RUNTIME_API is set) it takes API Gateway v2 HTTP events. It
// reads its environment once, at start (settings).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"tidings/functions"
	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/logging"
	"tidings/lib/metrics"
	"tidings/lib/stack"
)

func main() {
	s, err := load()
	log := logging.New(s.LogLevel, "function").With("function", s.Function)
	if err == nil {
		err = run(s, log)
	}
	if err != nil {
		log.Error("function stopped", "err", err)
		os.Exit(1)
	}
}

// settings are a function process's whole configuration.
type settings struct {
	functions.Settings
	Function     string `env:"FUNCTION"`      // the function this process serves
	UpstreamPort string `env:"UPSTREAM_PORT"` // the port of-watchdog (http mode) calls it on
	// ExecTimeout and MaxInflight are the settings of-watchdog reads,
	// applied here too (see stack.Function.CallLimits).
	ExecTimeout string `env:"exec_timeout"`
	MaxInflight string `env:"max_inflight"`
	// LambdaRuntimeAPI is set by AWS Lambda: the process then takes API
	// Gateway v2 HTTP events instead of serving HTTP.
	LambdaRuntimeAPI string `env:"AWS_LAMBDA_RUNTIME_API"`
}

func defaultSettings() settings {
	return settings{Settings: functions.DefaultSettings(), UpstreamPort: "8082"}
}

// load reads the environment over the defaults and the secrets.
func load() (settings, error) {
	s := defaultSettings()
	if err := config.Parse(&s); err != nil {
		return s, err
	}
	return s, s.Config.Complete()
}

func run(s settings, log *slog.Logger) error {
	// Known before anything is connected: a misnamed function stops here.
	if _, ok := catalog.Lookup(s.Function); !ok {
		return fmt.Errorf("$FUNCTION: no function named %q in the catalogue (%s)", s.Function, strings.Join(catalog.Names(), ", "))
	}
	cfg, name := s.Config, s.Function
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	deps, err := functions.Connect(ctx, s.Settings, log)
	if err != nil {
		return err
	}
	defer deps.Close()
	h, err := functions.New(name, deps)
	if err != nil {
		return fmt.Errorf("$FUNCTION: %w", err)
	}
	// The same settings of-watchdog reads; applying them here too keeps a
	// function honest when it runs without the watchdog in front.
	limits, err := stack.Function{Environment: map[string]string{
		"exec_timeout": s.ExecTimeout,
		"max_inflight": s.MaxInflight,
	}}.CallLimits()
	if err != nil {
		return err
	}
	adapter := &fn.Adapter{Handler: h, MaxBodyBytes: cfg.MaxBodyBytes, Limits: limits, Log: log}

	if s.LambdaRuntimeAPI != "" {
		lambda.StartWithOptions(adapter.HandleLambda, lambda.WithContext(ctx))
		return nil
	}
	reg := metrics.NewRegistry()
	mux := http.NewServeMux()
	mux.HandleFunc("/_/health", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("OK")) })
	mux.Handle("GET /_/metrics", metrics.Handler(reg))
	mux.Handle("/", metrics.NewFunctions(reg).Observe(name, adapter))
	srv := fn.NewServer(fn.Routes(mux), cfg.HTTP, log)
	srv.Addr = ":" + s.UpstreamPort
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	ln, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return err
	}
	log.Info("serving", "addr", srv.Addr)
	// net/http's own error answers (431, malformed requests) in the JSON shape too.
	if err := srv.Serve(fn.JSONErrorListener(ln)); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
