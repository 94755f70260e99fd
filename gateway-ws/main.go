// Command gateway-ws is tidings' WebSocket gateway; see package
// tidings/gateway-ws/gateway. It is configured from the environment and
// stops gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"tidings/gateway-ws/gateway"
)

func main() {
	cfg, err := gateway.LoadConfig()
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level(cfg.LogLevel)}))
	slog.SetDefault(log)
	if err != nil {
		log.Error("configuration", "err", err)
		os.Exit(2)
	}
	cfg.Logger = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := gateway.Run(ctx, cfg); err != nil {
		log.Error("gateway-ws stopped", "err", err)
		os.Exit(1)
	}
}

func level(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}
