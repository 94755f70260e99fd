// Command migrate applies tidings's database migrations: the directory's
// to $DATABASE_URL, the persist participant's to $PERSIST_DATABASE_URL and
// the counter participant's to $COUNTER_DATABASE_URL (both default to
// $DATABASE_URL). Running it from several places at once is safe: a
// PostgreSQL lock serialises them.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"tidings/lib/config"
	"tidings/lib/logging"
	"tidings/lib/store"
)

// settings are all migrate reads from its environment.
type settings struct {
	DatabaseURL        string `env:"DATABASE_URL"`
	PersistDatabaseURL string `env:"PERSIST_DATABASE_URL"`
	CounterDatabaseURL string `env:"COUNTER_DATABASE_URL"`
	LogLevel           string `env:"LOG_LEVEL"`
}

// defaultSettings is the database every tidings process defaults to.
func defaultSettings() settings {
	d := config.Default()
	return settings{DatabaseURL: d.DatabaseURL, LogLevel: d.LogLevel}
}

// databases are the three databases to migrate, by lib/config's rule.
func (s settings) databases() config.Databases {
	return config.Config{DatabaseURL: s.DatabaseURL, PersistDatabaseURL: s.PersistDatabaseURL, CounterDatabaseURL: s.CounterDatabaseURL}.Databases()
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := defaultSettings()
	err := config.Parse(&s)
	var dbs store.DBs
	if err == nil {
		dbs, err = store.NewDBs(ctx, s.databases())
	}
	if err == nil {
		err = dbs.Migrate(ctx, logging.New(s.LogLevel, "migrate"))
		dbs.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "migrate:", err)
		os.Exit(1)
	}
}
