package jobs_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/gateway-ws/invoke"
	"tidings/gateway-ws/jobs"
	"tidings/lib/auth"
)

// How gateway-ws wires the queue: config from the environment, the owner's
// job events to its user:<id> channel, the API on the gateway's mux, and
// the workers for as long as the process runs.
func Example() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	cfg := jobs.DefaultConfig() // gateway-ws reads its environment over these (config.Parse)
	cfg.Prefix = "tidings:jobs:"
	cfg.Notify = func(ctx context.Context, userID int64, payload any) {
		// e.g. hub.Broadcast(ctx, fmt.Sprintf("user:%d", userID), "job", payload)
	}
	calls := invoke.New(invoke.Config{FaaSURL: "http://127.0.0.1:8080", InternalKey: "the internal key"})
	q, err := jobs.New(rdb, calls, auth.NewTokens([]byte("the JWT secret, 32 bytes or more"), time.Hour), cfg)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/jobs/", q.Handler())
	go func() { _ = q.Run(ctx) }() // cancel ctx to stop; in-flight jobs are reclaimed elsewhere

	// gateway-ws itself enqueues internal functions, such as a mail:
	_, _ = q.Enqueue(ctx, 42, "send-mail", []byte(`{"idempotency_key":"n-1:u-42","to":"ann@example.com","subject":"Hi","text":"..."}`))
}
