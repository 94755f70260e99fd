package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"

	"tidings/gateway-ws/gateway"
	"tidings/infra/proc"
	"tidings/lib/auth"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

// gatewayTarget is one gateway-ws process with conns sockets joined to one
// topic, published to through its internal broadcast endpoint.
type gatewayTarget struct {
	srv         *proc.Process
	addrs       []string // client i dials addrs[i%len(addrs)]; broadcasts go to addrs[0]
	topic       string
	users       []int64
	tokens      *auth.Tokens
	internalKey string
	http        *http.Client
	dialer      websocket.Dialer

	mu    sync.Mutex
	conns []*websocket.Conn
}

func benchGateway(ctx context.Context, o options) (result, error) {
	dbURL, topicID, users, dropDB, err := benchDatabase(ctx, o)
	if err != nil {
		return result{}, err
	}
	defer dropDB()
	bin, cleanup, err := gatewayBinary(o)
	if err != nil {
		return result{}, err
	}
	defer cleanup()

	secret, internalKey := rand.Text()+rand.Text(), rand.Text() // the JWT secret needs 32 bytes or more
	prefix := "tidings-bench:" + rand.Text() + ":"
	srv, addr, err := startGateway(ctx, o, bin, dbURL, prefix, secret, internalKey)
	if err != nil {
		return result{}, err
	}
	defer srv.Stop(syscall.SIGTERM)
	t := &gatewayTarget{
		srv:         srv,
		addrs:       []string{addr},
		topic:       fmt.Sprintf("topic:%d", topicID),
		users:       users,
		tokens:      auth.NewTokens([]byte(secret), time.Hour),
		internalKey: internalKey,
		http:        &http.Client{Timeout: 30 * time.Second},
		dialer:      websocket.Dialer{ReadBufferSize: 1024, WriteBufferSize: 1024, HandshakeTimeout: 30 * time.Second},
	}
	return measure(ctx, kindGateway, "gateway-ws (Phoenix V2, Redis fan-out)", t, o)
}

// startGateway starts one gateway-ws process on a free loopback port and
// waits until it is healthy; replicas share the database, the Redis prefix
// and the secrets.
func startGateway(ctx context.Context, o options, bin, dbURL, prefix, secret, internalKey string) (*proc.Process, string, error) {
	addr := proc.FreeAddr()
	srv, err := proc.Start("/dev/stderr", nil, []string{
		"GATEWAY_ADDR=" + addr,
		"REDIS_URL=" + o.redisURL,
		"REDIS_PREFIX=" + prefix,
		"DATABASE_URL=" + dbURL, "PERSIST_DATABASE_URL=", "COUNTER_DATABASE_URL=", // one database, whatever the shell exported
		"SECRETS_DIR=" + os.TempDir() + "/tidings-bench-no-secrets",
		"JWT_SECRET=" + secret,
		"INTERNAL_KEY=" + internalKey,
		"WS_IDLE_TIMEOUT=30m", // the clients are idle on purpose
		"LOG_LEVEL=warn",
	}, bin)
	if err != nil {
		return nil, "", err
	}
	if err := srv.WaitHTTP(ctx, "http://"+addr+"/healthz", 30*time.Second); err != nil {
		srv.Stop(syscall.SIGTERM)
		return nil, "", fmt.Errorf("gateway-ws: %w", err)
	}
	return srv, addr, nil
}

func (t *gatewayTarget) pid() int { return t.srv.Cmd.Process.Pid }

func (t *gatewayTarget) connect(ctx context.Context, i int, rec *recorder) error {
	tok, _, err := t.tokens.Issue(t.users[i])
	if err != nil {
		return err
	}
	ws, _, err := t.dialer.DialContext(ctx, fmt.Sprintf("ws://%s/socket/websocket?vsn=2.0.0&token=%s", t.addrs[i%len(t.addrs)], tok), nil)
	if err != nil {
		return err
	}
	join := gateway.Message{JoinRef: json.RawMessage(`"1"`), Ref: json.RawMessage(`"1"`), Topic: t.topic, Event: gateway.EventJoin, Payload: json.RawMessage(`{}`)}
	if err := ws.WriteMessage(websocket.TextMessage, join.Encode()); err != nil {
		ws.Close()
		return err
	}
	_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return fmt.Errorf("join reply: %w", err)
	}
	if !bytes.Contains(data, []byte(`"status":"ok"`)) {
		ws.Close()
		return fmt.Errorf("join refused: %s", data)
	}
	_ = ws.SetReadDeadline(time.Time{})
	t.mu.Lock()
	t.conns = append(t.conns, ws)
	t.mu.Unlock()
	go func() {
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if m, err := gateway.Decode(data); err == nil && m.Event == "bench" {
				rec.deliver(m.Payload)
			}
		}
	}()
	return nil
}

func (t *gatewayTarget) publish(ctx context.Context, payload []byte) error {
	body, _ := json.Marshal(map[string]any{"topic": t.topic, "event": "bench", "payload": json.RawMessage(payload)})
	return postBroadcast(ctx, t.http, "http://"+t.addrs[0]+"/internal/broadcast", http.Header{auth.InternalKeyHeader: {t.internalKey}}, body)
}

// postBroadcast POSTs one broadcast and expects 202 Accepted.
func postBroadcast(ctx context.Context, c *http.Client, url string, header http.Header, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("broadcast: HTTP %d", resp.StatusCode)
	}
	return nil
}

func (t *gatewayTarget) closeClients() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.conns {
		c.Close()
	}
	t.conns = nil
}

// benchDatabase creates a migrated database with one topic and conns
// subscribers, and returns a function that drops it.
func benchDatabase(ctx context.Context, o options) (url string, topicID int64, users []int64, drop func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, o.adminURL)
	if err != nil {
		return "", 0, nil, nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer admin.Close(ctx)
	name := "tidings_bench_" + strings.ToLower(rand.Text())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", 0, nil, nil, fmt.Errorf("create bench database: %w", err)
	}
	drop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, o.adminURL); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	}
	fail := func(e error) (string, int64, []int64, func(), error) {
		drop()
		return "", 0, nil, nil, e
	}
	url = testenv.WithDatabase(o.adminURL, name)
	pool, err := store.Open(ctx, url)
	if err != nil {
		return fail(err)
	}
	defer pool.Close()
	if err := store.Single(pool).Migrate(ctx, nil); err != nil {
		return fail(err)
	}
	var owner int64
	if err := pool.QueryRow(ctx, `INSERT INTO users (email, name, password_hash) VALUES ('owner@bench.test', 'owner', 'x') RETURNING id`).Scan(&owner); err != nil {
		return fail(err)
	}
	topic, err := store.CreateTopic(ctx, pool, owner, "bench", "")
	if err != nil {
		return fail(err)
	}
	rows, err := pool.Query(ctx, `
		WITH u AS (
			INSERT INTO users (email, name, password_hash)
			SELECT 'bench' || g || '@bench.test', 'bench ' || g, 'x' FROM generate_series(1, $1) g
			RETURNING id
		), s AS (
			INSERT INTO subscriptions (topic_id, user_id) SELECT $2, id FROM u
		)
		SELECT id FROM u ORDER BY id`, o.conns, topic.ID)
	if err != nil {
		return fail(err)
	}
	users, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return fail(err)
	}
	if len(users) != o.conns {
		return fail(errors.New("seeding users came up short"))
	}
	return url, topic.ID, users, drop, nil
}

// gatewayBinary returns the gateway binary to run, building it when none
// was given.
func gatewayBinary(o options) (string, func(), error) {
	if o.gatewayBin != "" {
		return o.gatewayBin, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "tidings-bench-")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "gateway-ws")
	cmd := exec.Command("go", "build", "-o", bin, "./gateway-ws")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build ./gateway-ws (run the bench from the repository root, or pass -gateway-bin): %w", err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}
