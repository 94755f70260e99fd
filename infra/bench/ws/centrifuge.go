package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/centrifugal/centrifuge"
	centrifugego "github.com/centrifugal/centrifuge-go"

	"tidings/infra/proc"
)

// The centrifuge peer: a server built on github.com/centrifugal/centrifuge
// with its Redis broker, driven by centrifuge-go clients. The server runs
// in a child process (this binary re-executed with -serve-centrifuge) so
// its RSS is measured apart from the clients', as nats-server's is. A
// broadcast takes the path a gateway-ws one takes: an HTTP request to the
// server, which publishes to Redis (Node.Publish through the RedisBroker),
// whose message the node fans out to its local subscribers.
//
// APIs followed (module cache): centrifuge v0.40.1 README.md's example,
// node.go (New, SetBroker, Run, Publish, OnConnecting), broker_redis.go
// (RedisBrokerConfig, NewRedisBroker), redis_shard.go (RedisShardConfig,
// NewRedisShard), handler_websocket.go (NewWebsocketHandler); centrifuge-go
// v0.12.1 client.go (NewJsonClient, Connect, NewSubscription, Close),
// subscription.go (Subscribe), subscription_events.go (OnSubscribed,
// OnPublication, OnError).

const centrifugeChannel = "bench"

// serveCentrifuge is the child process: a centrifuge node on addr with a
// Redis broker under prefix, until SIGTERM.
func serveCentrifuge(addr, redisURL, prefix string) error {
	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelError, LogHandler: func(e centrifuge.LogEntry) {
		fmt.Fprintf(os.Stderr, "centrifuge: %s %v\n", e.Message, e.Fields)
	}})
	if err != nil {
		return err
	}
	shard, err := centrifuge.NewRedisShard(node, centrifuge.RedisShardConfig{Address: redisURL})
	if err != nil {
		return err
	}
	broker, err := centrifuge.NewRedisBroker(node, centrifuge.RedisBrokerConfig{Prefix: prefix, Shards: []*centrifuge.RedisShard{shard}})
	if err != nil {
		return err
	}
	node.SetBroker(broker)
	node.OnConnect(func(c *centrifuge.Client) {
		c.OnSubscribe(func(_ centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{}, nil)
		})
	})
	if err := node.Run(); err != nil {
		return err
	}
	ws := centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{
		ReadBufferSize: 1024, WriteBufferSize: 1024, // as the gateway bench's clients and nats use
		CheckOrigin: func(*http.Request) bool { return true },
	})
	mux := http.NewServeMux()
	// Each client says who it is: the bench has no auth to measure here,
	// and distinct users keep per-user bookkeeping as in real use.
	mux.Handle("/connection/websocket", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred := &centrifuge.Credentials{UserID: r.URL.Query().Get("user")}
		ws.ServeHTTP(w, r.WithContext(centrifuge.SetCredentials(r.Context(), cred)))
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if _, err := node.Publish(centrifugeChannel, data); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = node.Shutdown(sctx)
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// centrifugeTarget is the child server and the clients connected to it.
type centrifugeTarget struct {
	srv  *proc.Process
	addr string
	http *http.Client

	mu      sync.Mutex
	clients []*centrifugego.Client
}

func benchCentrifuge(ctx context.Context, o options) (result, error) {
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	addr := proc.FreeAddr()
	prefix := "tidings-bench-centrifuge:" + rand.Text()
	srv, err := proc.Start("/dev/stderr", nil, nil, self, "-serve-centrifuge", addr, "-redis-url", o.redisURL, "-centrifuge-prefix", prefix)
	if err != nil {
		return result{}, err
	}
	defer srv.Stop(syscall.SIGTERM)
	if err := srv.WaitHTTP(ctx, "http://"+addr+"/healthz", 30*time.Second); err != nil {
		return result{}, fmt.Errorf("centrifuge server: %w", err)
	}
	t := &centrifugeTarget{srv: srv, addr: addr, http: &http.Client{Timeout: 30 * time.Second}}
	return measure(ctx, kindCentrifuge, "centrifuge "+moduleVersion("github.com/centrifugal/centrifuge")+" (Redis broker)", t, o)
}

func (t *centrifugeTarget) pid() int { return t.srv.Cmd.Process.Pid }

func (t *centrifugeTarget) connect(ctx context.Context, i int, rec *recorder) error {
	c := centrifugego.NewJsonClient("ws://"+t.addr+"/connection/websocket?user="+strconv.Itoa(i), centrifugego.Config{
		HandshakeTimeout: 30 * time.Second,
		ReadTimeout:      30 * time.Second,
		WriteTimeout:     30 * time.Second,
	})
	sub, err := c.NewSubscription(centrifugeChannel)
	if err != nil {
		c.Close()
		return err
	}
	subscribed := make(chan struct{})
	failed := make(chan error, 1)
	var once sync.Once
	sub.OnSubscribed(func(centrifugego.SubscribedEvent) { once.Do(func() { close(subscribed) }) })
	sub.OnError(func(e centrifugego.SubscriptionErrorEvent) {
		select {
		case failed <- e.Error:
		default:
		}
	})
	sub.OnPublication(func(e centrifugego.PublicationEvent) { rec.deliver(e.Data) })
	if err := c.Connect(); err != nil {
		c.Close()
		return err
	}
	if err := sub.Subscribe(); err != nil {
		c.Close()
		return err
	}
	select {
	case <-subscribed:
	case err := <-failed:
		c.Close()
		return fmt.Errorf("subscribe: %w", err)
	case <-time.After(30 * time.Second):
		c.Close()
		return errors.New("not subscribed within 30s")
	case <-ctx.Done():
		c.Close()
		return ctx.Err()
	}
	t.mu.Lock()
	t.clients = append(t.clients, c)
	t.mu.Unlock()
	return nil
}

func (t *centrifugeTarget) publish(ctx context.Context, payload []byte) error {
	return postBroadcast(ctx, t.http, "http://"+t.addr+"/publish", nil, payload)
}

func (t *centrifugeTarget) closeClients() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.clients {
		c.Close()
	}
	t.clients = nil
}

// moduleVersion is the version of a module this binary was built with.
func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return ""
}
