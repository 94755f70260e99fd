// Command devstack runs the whole of tidings on one machine (`make up`):
// it finds or starts PostgreSQL and Redis, applies migrations, and serves
// every function of stack.yml at :8080/function/<name>. Ctrl-C stops all
// it started.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tidings/functions"
	"tidings/gateway-ws/gateway"
	"tidings/infra/fnhost"
	"tidings/infra/mailsink"
	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/logging"
	"tidings/lib/stack"
	"tidings/lib/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

func run() error {
	stackPath := flag.String("stack", "stack.yml", "OpenFaaS stack file whose functions to serve")
	addr := flag.String("functions-addr", config.Env("FUNCTIONS_ADDR", ":8080"), "address of the local FaaS host")
	dbName := flag.String("db", "tidings", "database to create and use on a PostgreSQL found running")
	stateDir := flag.String("state", config.Env("DEV_STATE_DIR", ".dev"), "directory for the dev secrets")
	withGateway := flag.Bool("gateway", true, "also run gateway-ws (at $GATEWAY_ADDR, default :4000)")
	flag.Parse()

	log := logging.New(os.Getenv("LOG_LEVEL"), "devstack")
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	pg, err := ensurePostgres(ctx, log, config.Env("DEV_POSTGRES_PORT", "5432"), *dbName)
	if err != nil {
		return err
	}
	defer pg.Stop()
	rd, err := ensureRedis(ctx, log, config.Env("DEV_REDIS_PORT", "6379"))
	if err != nil {
		return err
	}
	defer rd.Stop()
	if err := devSecrets(filepath.Join(*stateDir, "secrets")); err != nil {
		return err
	}
	os.Setenv("DATABASE_URL", pg.URL)
	os.Setenv("REDIS_URL", rd.URL)
	sink, err := ensureMail(log)
	if err != nil {
		return err
	}
	if sink != nil {
		defer sink.Close()
	}

	cfg, err := config.Load()
	if err != nil {
		return err
	}
	deps, err := functions.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer deps.Close()
	if err := store.Migrate(ctx, deps.DB); err != nil {
		return err
	}
	sf, err := stack.Load(*stackPath)
	if err != nil {
		return err
	}
	fns, err := fnhost.FromStack(sf, deps)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("functions: %w", err)
	}
	handler := fnhost.New(fns, cfg.MaxBodyBytes, log)
	if sink != nil {
		mux := http.NewServeMux()
		mux.Handle("/dev/mails", sink.Handler())
		mux.Handle("/", handler)
		handler = mux
	}
	srv := fn.NewServer(handler, cfg.HTTP, log)
	go func() {
		if err := srv.Serve(fn.JSONErrorListener(ln)); !errors.Is(err, http.ErrServerClosed) {
			log.Error("functions host stopped", "err", err)
			stop()
		}
	}()

	base := "http://" + hostPort(ln.Addr())
	gatewayDone := make(chan error, 1)
	gatewayURL := ""
	if *withGateway {
		gcfg, err := gatewayConfig(cfg, sf, base)
		if err != nil {
			return err
		}
		gln, err := net.Listen("tcp", gcfg.Addr)
		if err != nil {
			return fmt.Errorf("gateway-ws: %w", err)
		}
		gatewayURL = "http://" + hostPort(gln.Addr())
		gw, err := gateway.New(ctx, gcfg)
		if err != nil {
			gln.Close()
			return err
		}
		go func() { gatewayDone <- gw.Serve(ctx, gln) }()
	} else {
		gatewayDone <- nil
	}
	fmt.Printf("tidings is up\n")
	fmt.Printf("  functions   %s/function/<name>  (%s)\n", base, strings.Join(catalog.Names(), ", "))
	fmt.Printf("  login       %s/function/login\n", base)
	if gatewayURL != "" {
		ws := strings.Replace(gatewayURL, "http://", "ws://", 1)
		fmt.Printf("  web client  %s/\n", gatewayURL)
		fmt.Printf("  dashboard   %s/dashboard  (metrics at /metrics)\n", gatewayURL)
		fmt.Printf("  gateway-ws  %s  (WebSocket %s/socket/websocket?vsn=2.0.0&token=JWT)\n", gatewayURL, ws)
	}
	if sink != nil {
		fmt.Printf("  mails       %s/dev/mails  (send-mail delivers to a local SMTP sink at %s and they are printed here)\n", base, sink.Addr())
	}
	fmt.Printf("  PostgreSQL  %s\n", pg.URL)
	fmt.Printf("  Redis       %s\n", rd.URL)
	fmt.Printf("Press Ctrl-C to stop.\n")

	<-ctx.Done()
	fmt.Println("stopping")
	gwErr := <-gatewayDone // gateway-ws closes its sockets first
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(gwErr, srv.Shutdown(shutdown))
}

// gatewayConfig is gateway-ws's configuration for the dev stack: its own
// environment, calling the local host, with each function's timeout and
// concurrency limit from stack.yml.
func gatewayConfig(cfg config.Config, sf *stack.File, faasURL string) (gateway.Config, error) {
	gcfg, err := gateway.ConfigFrom(cfg)
	if err != nil {
		return gcfg, err
	}
	gcfg.FaaSURL, gcfg.Logger = faasURL, logging.New(cfg.LogLevel, "gateway-ws")
	for name, f := range sf.Functions {
		limits, err := f.CallLimits()
		if err != nil {
			return gcfg, err
		}
		settings := gcfg.Calls.Default
		settings.Timeout, settings.MaxInflight = limits.Timeout, limits.MaxInflight
		if _, set := gcfg.Calls.PerFunction[name]; !set {
			gcfg.Calls.PerFunction[name] = settings
		}
	}
	return gcfg, nil
}

// ensureMail starts a local SMTP sink for send-mail unless SMTP_HOST names
// a real server, so mail works in development with nothing to set up; the
// mails it receives are printed and listed at /dev/mails.
func ensureMail(log *slog.Logger) (*mailsink.Sink, error) {
	if os.Getenv("SMTP_HOST") != "" {
		return nil, nil
	}
	// The same read deadlines as the stack's HTTP servers; the sink starts
	// before the rest of the configuration is read, since that reads SMTP_*.
	timeouts, err := config.HTTPServerFromEnv()
	if err != nil {
		return nil, err
	}
	sink, err := mailsink.Start(mailsink.Options{Addr: "127.0.0.1:" + config.Env("DEV_SMTP_PORT", "2525"), Print: os.Stdout, Timeouts: timeouts})
	if err != nil {
		// The default port is taken (another stack?): any free port will do.
		if sink, err = mailsink.Start(mailsink.Options{Addr: "127.0.0.1:0", Print: os.Stdout, Timeouts: timeouts}); err != nil {
			return nil, fmt.Errorf("start the local SMTP sink: %w", err)
		}
	}
	os.Setenv("SMTP_HOST", sink.Host())
	os.Setenv("SMTP_PORT", strconv.Itoa(sink.Port()))
	os.Setenv("SMTP_STARTTLS", "none")
	log.Info("mail goes to a local SMTP sink", "addr", sink.Addr())
	return sink, nil
}

// hostPort renders a listener address as a URL host, 127.0.0.1 for "any".
func hostPort(a net.Addr) string {
	tcp := a.(*net.TCPAddr)
	if tcp.IP.IsUnspecified() {
		return fmt.Sprintf("127.0.0.1:%d", tcp.Port)
	}
	return tcp.String()
}

// devSecrets makes the dev secrets once and keeps them, so tokens survive
// a restart of the stack; it points SECRETS_DIR at them unless set.
func devSecrets(dir string) error {
	if os.Getenv("SECRETS_DIR") != "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, name := range []string{config.JWTSecret, config.InternalKey} {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err == nil {
			continue
		}
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		if err := os.WriteFile(path, []byte(hex.EncodeToString(b)), 0o600); err != nil {
			return err
		}
	}
	return os.Setenv("SECRETS_DIR", dir)
}
