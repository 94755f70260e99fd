// Command migrate applies tidings's database migrations to $DATABASE_URL.
// Running it from several places at once is safe: a PostgreSQL lock
// serialises them.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tidings/lib/config"
	"tidings/lib/logging"
	"tidings/lib/store"
)

// settings are all migrate reads from its environment.
type settings struct {
	DatabaseURL string `env:"DATABASE_URL"`
	LogLevel    string `env:"LOG_LEVEL"`
}

// defaultSettings is the database every tidings process defaults to.
func defaultSettings() settings {
	d := config.Default()
	return settings{DatabaseURL: d.DatabaseURL, LogLevel: d.LogLevel}
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := defaultSettings()
	err := config.Parse(&s)
	var pool *pgxpool.Pool
	if err == nil {
		pool, err = store.Open(ctx, s.DatabaseURL)
	}
	if err == nil {
		err = store.Migrate(ctx, pool, logging.New(s.LogLevel, "migrate"))
		pool.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "migrate:", err)
		os.Exit(1)
	}
}
