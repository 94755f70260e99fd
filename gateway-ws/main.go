// Command gateway-ws is tidings' WebSocket gateway; see package
// tidings/gateway-ws/gateway. It reads its environment once, at start
// (settings), and stops gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"

	"tidings/gateway-ws/coordinator"
	"tidings/gateway-ws/gateway"
	"tidings/lib/config"
	"tidings/lib/logging"
)

// settings are gateway-ws's whole configuration.
type settings struct {
	gateway.Config
	// CrashRate is the chance that the process dies at each two-phase
	// commit fault point: a tool for `make chaos`, off (0) by default.
	CrashRate float64 `env:"COORDINATOR_CRASH_RATE"`
}

func defaultSettings() settings { return settings{Config: gateway.DefaultConfig()} }

// load reads the environment over the defaults and completes the gateway's
// configuration (its secrets).
func load() (settings, error) {
	s := defaultSettings()
	if err := config.Parse(&s); err != nil {
		return s, err
	}
	if s.CrashRate < 0 || s.CrashRate > 1 {
		return s, fmt.Errorf("$COORDINATOR_CRASH_RATE must be a probability from 0 to 1, not %v", s.CrashRate)
	}
	return s, s.Config.Complete()
}

func main() {
	s, err := load()
	log := logging.New(s.LogLevel, "gateway-ws")
	if err != nil {
		log.Error("configuration", "err", err)
		os.Exit(2)
	}
	cfg := s.Config
	cfg.Logger = log
	cfg.Crash = crashHook(s.CrashRate, log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := gateway.Run(ctx, cfg); err != nil {
		log.Error("gateway-ws stopped", "err", err)
		os.Exit(1)
	}
}

// crashHook dies at a fault point with the given chance; nil when it is 0.
func crashHook(rate float64, log *slog.Logger) func(coordinator.Fault) bool {
	if rate == 0 {
		return nil
	}
	return func(at coordinator.Fault) bool {
		if rand.Float64() < rate {
			log.Warn("crashing on purpose (COORDINATOR_CRASH_RATE)", "at", string(at))
			os.Exit(137)
		}
		return false
	}
}
