// Command gateway-ws is tidings' WebSocket gateway; see package
// tidings/gateway-ws/gateway. It is configured from the environment and
// stops gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"tidings/gateway-ws/coordinator"
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
	if cfg.Crash, err = crashHook(log); err != nil {
		log.Error("configuration", "err", err)
		os.Exit(2)
	}
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

// crashHook reads COORDINATOR_CRASH_RATE, the chance that the process dies
// at each two-phase commit fault point: a tool for `make chaos`, off by
// default.
func crashHook(log *slog.Logger) (func(coordinator.Fault) bool, error) {
	v := os.Getenv("COORDINATOR_CRASH_RATE")
	if v == "" {
		return nil, nil
	}
	rate, err := strconv.ParseFloat(v, 64)
	if err != nil || rate < 0 || rate > 1 {
		return nil, fmt.Errorf("COORDINATOR_CRASH_RATE must be a probability from 0 to 1, not %q", v)
	}
	return func(at coordinator.Fault) bool {
		if rand.Float64() < rate {
			log.Warn("crashing on purpose (COORDINATOR_CRASH_RATE)", "at", string(at))
			os.Exit(137)
		}
		return false
	}, nil
}
