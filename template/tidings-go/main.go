// Command handler is the entry point of the tidings-go OpenFaaS template: it
// serves the one function named by $FUNCTION. Under of-watchdog (http mode)
// it is the upstream on $UPSTREAM_PORT with /_/health; on AWS Lambda
// (AWS_LAMBDA_RUNTIME_API is set) it takes API Gateway v2 HTTP events.
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
	if err := run(); err != nil {
		slog.Error("function stopped", "err", err)
		os.Exit(1)
	}
}

func run() error {
	name := os.Getenv("FUNCTION")
	log := logging.New(os.Getenv("LOG_LEVEL"), "function").With("function", name)
	slog.SetDefault(log)
	// Known before anything is connected: a misnamed function stops here.
	if _, ok := catalog.Lookup(name); !ok {
		return fmt.Errorf("$FUNCTION: no function named %q in the catalogue (%s)", name, strings.Join(catalog.Names(), ", "))
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	deps, err := functions.Connect(ctx, cfg)
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
		"exec_timeout": os.Getenv("exec_timeout"),
		"max_inflight": os.Getenv("max_inflight"),
	}}.CallLimits()
	if err != nil {
		return err
	}
	adapter := &fn.Adapter{Handler: h, MaxBodyBytes: cfg.MaxBodyBytes, Limits: limits, Log: log}

	if os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" {
		lambda.StartWithOptions(adapter.HandleLambda, lambda.WithContext(ctx))
		return nil
	}
	reg := metrics.NewRegistry()
	mux := http.NewServeMux()
	mux.HandleFunc("/_/health", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("OK")) })
	mux.Handle("GET /_/metrics", metrics.Handler(reg))
	mux.Handle("/", metrics.NewFunctions(reg).Observe(name, adapter))
	srv := fn.NewServer(fn.Routes(mux), cfg.HTTP, log)
	srv.Addr = ":" + config.Env("UPSTREAM_PORT", "8082")
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
