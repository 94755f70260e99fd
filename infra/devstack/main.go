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
	"strings"
	"syscall"
	"time"

	"tidings/functions"
	sendmail "tidings/functions/send-mail"
	"tidings/gateway-ws/gateway"
	"tidings/gateway-ws/invoke"
	"tidings/infra/fnhost"
	"tidings/infra/mailsink"
	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/logging"
	"tidings/lib/stack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

// settings are the dev stack's whole configuration: gateway-ws's (the
// functions share its base configuration and cache settings), send-mail's
// mail server, and the stack's own.
type settings struct {
	Gateway gateway.Config
	Mail    sendmail.Config

	FunctionsAddr string `env:"FUNCTIONS_ADDR"`    // the local FaaS host
	StateDir      string `env:"DEV_STATE_DIR"`     // where the dev secrets are kept between runs
	PostgresPort  string `env:"DEV_POSTGRES_PORT"` // where to look for, or start, PostgreSQL
	RedisPort     string `env:"DEV_REDIS_PORT"`    // where to look for, or start, Redis
	Redis         string `env:"DEV_REDIS"`         // server, or cluster: a throwaway Redis Cluster instead
	SMTPPort      string `env:"DEV_SMTP_PORT"`     // the local SMTP sink's port, if free

	// Given are the servers and secrets the developer named; each one
	// left empty is found or started (made, for the secrets) by the stack.
	Given struct {
		DatabaseURL string `env:"DATABASE_URL"`
		RedisURL    string `env:"REDIS_URL"`
		SMTPHost    string `env:"SMTP_HOST"`
		SecretsDir  string `env:"SECRETS_DIR"`
	}
}

func defaultSettings() settings {
	return settings{
		Gateway:       gateway.DefaultConfig(),
		Mail:          sendmail.DefaultConfig(),
		FunctionsAddr: ":8080",
		StateDir:      ".dev",
		PostgresPort:  "5432",
		RedisPort:     "6379",
		Redis:         "server",
		SMTPPort:      "2525",
	}
}

func run() error {
	s := defaultSettings()
	if err := config.Parse(&s); err != nil {
		return err
	}
	stackPath := flag.String("stack", "stack.yml", "OpenFaaS stack file whose functions to serve")
	addr := flag.String("functions-addr", s.FunctionsAddr, "address of the local FaaS host")
	dbName := flag.String("db", "tidings", "directory database to create and use on a PostgreSQL found or started; the participants' are <db>_persist and <db>_counter")
	stateDir := flag.String("state", s.StateDir, "directory for the dev secrets")
	withGateway := flag.Bool("gateway", true, "also run gateway-ws (at $GATEWAY_ADDR, default :4000)")
	flag.Parse()

	log := logging.New(s.Gateway.LogLevel, "devstack")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	given := config.Databases{Directory: s.Given.DatabaseURL, Persist: s.Gateway.PersistDatabaseURL, Counter: s.Gateway.CounterDatabaseURL}
	dbs, pg, err := ensurePostgres(ctx, log, given, s.PostgresPort, *dbName)
	if err != nil {
		return err
	}
	defer pg.Stop()
	rd, err := ensureRedis(ctx, log, s.Given.RedisURL, s.RedisPort, s.Redis)
	if err != nil {
		return err
	}
	defer rd.Stop()
	if s.Given.SecretsDir == "" {
		s.Gateway.SecretsDir = filepath.Join(*stateDir, "secrets")
		if err := devSecrets(s.Gateway.SecretsDir); err != nil {
			return err
		}
	}
	s.Gateway.DatabaseURL, s.Gateway.PersistDatabaseURL, s.Gateway.CounterDatabaseURL = dbs.Directory, dbs.Persist, dbs.Counter
	s.Gateway.RedisURL = rd.URL
	var sink *mailsink.Sink
	if s.Given.SMTPHost == "" {
		if sink, err = startMail(log, s.SMTPPort, s.Gateway.HTTP); err != nil {
			return err
		}
		defer sink.Close()
		s.Mail.Host, s.Mail.Port, s.Mail.StartTLS = sink.Host(), sink.Port(), "none"
	}
	if err := s.Gateway.Complete(); err != nil {
		return err
	}
	cfg := s.Gateway.Config

	deps, err := functions.Connect(ctx, functions.Settings{Config: cfg, Cache: s.Gateway.Cache, Mail: s.Mail}, log)
	if err != nil {
		return err
	}
	defer deps.Close()
	if err := deps.DBs.Migrate(ctx, log); err != nil {
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
		gcfg, err := gatewayConfig(s.Gateway, sf, base)
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
		if s.Gateway.AdminKey != "" {
			fmt.Printf("  direct      POST %s/api/notifications  (Authorization: Bearer <the admin key: %s, else $ADMIN_KEY>)\n",
				gatewayURL, filepath.Join(s.Gateway.SecretsDir, config.AdminKey))
		}
	}
	if sink != nil {
		fmt.Printf("  mails       %s/dev/mails  (send-mail delivers to a local SMTP sink at %s and they are printed here)\n", base, sink.Addr())
	}
	fmt.Printf("  PostgreSQL  DATABASE_URL=%s  (the directory: users, topics, subscriptions)\n", dbs.Directory)
	fmt.Printf("              PERSIST_DATABASE_URL=%s  (notifications, deliveries)\n", dbs.Persist)
	fmt.Printf("              COUNTER_DATABASE_URL=%s  (unread counters)\n", dbs.Counter)
	fmt.Printf("  Redis       %s\n", rd.URL)
	fmt.Printf("Press Ctrl-C to stop.\n")

	<-ctx.Done()
	fmt.Println("stopping")
	gwErr := <-gatewayDone // gateway-ws closes its sockets first
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(gwErr, srv.Shutdown(shutdown))
}

// gatewayConfig is gateway-ws's configuration for the dev stack: calling
// the local host, with each function's timeout and concurrency limit from
// stack.yml (FUNCTION_TIMEOUTS and FUNCTION_MAX_INFLIGHTS still win).
func gatewayConfig(gcfg gateway.Config, sf *stack.File, faasURL string) (gateway.Config, error) {
	gcfg.FaaSURL, gcfg.Logger = faasURL, logging.New(gcfg.LogLevel, "gateway-ws")
	// gateway-ws reads only the directory; deployments give it no
	// participant's URL, and neither does the dev stack.
	gcfg.PersistDatabaseURL, gcfg.CounterDatabaseURL = "", ""
	gcfg.Calls.PerFunction = make(map[string]invoke.Settings, len(sf.Functions))
	for name, f := range sf.Functions {
		limits, err := f.CallLimits()
		if err != nil {
			return gcfg, err
		}
		settings := gcfg.Calls.Default
		settings.Timeout, settings.MaxInflight = limits.Timeout, limits.MaxInflight
		gcfg.Calls.PerFunction[name] = settings
	}
	return gcfg, nil
}

// startMail starts a local SMTP sink for send-mail, so mail works in
// development with nothing to set up; the mails it receives are printed
// and listed at /dev/mails. It holds its clients to the stack's HTTP read
// deadlines.
func startMail(log *slog.Logger, port string, timeouts config.HTTPServer) (*mailsink.Sink, error) {
	sink, err := mailsink.Start(mailsink.Options{Addr: "127.0.0.1:" + port, Print: os.Stdout, Timeouts: timeouts})
	if err != nil {
		// The default port is taken (another stack?): any free port will do.
		if sink, err = mailsink.Start(mailsink.Options{Addr: "127.0.0.1:0", Print: os.Stdout, Timeouts: timeouts}); err != nil {
			return nil, fmt.Errorf("start the local SMTP sink: %w", err)
		}
	}
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

// devSecrets makes the dev secrets in dir once and keeps them, so tokens
// survive a restart of the stack.
func devSecrets(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, name := range []string{config.JWTSecret, config.InternalKey, config.AdminKey} {
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
	return nil
}
