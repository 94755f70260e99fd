// Command migrate applies tidings's database migrations to $DATABASE_URL.
// Running it from several places at once is safe: a PostgreSQL lock
// serialises them.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"tidings/lib/config"
	"tidings/lib/store"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pool, err := store.Open(ctx, config.Env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tidings?sslmode=disable"))
	if err == nil {
		err = store.Migrate(ctx, pool)
		pool.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "migrate:", err)
		os.Exit(1)
	}
}
