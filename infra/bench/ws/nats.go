package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"tidings/infra/proc"
)

// natsTarget is a nats-server with a WebSocket listener; the clients
// connect over ws:// and subscribe one subject, the publisher over TCP.
type natsTarget struct {
	srv *proc.Process
	ws  string
	pub *nats.Conn

	mu    sync.Mutex
	conns []*nats.Conn
}

const natsSubject = "bench"

func benchNATS(ctx context.Context, o options) (result, error) {
	clientAddr, wsAddr, monitorAddr := proc.FreeAddr(), proc.FreeAddr(), proc.FreeAddr()
	dir, err := os.MkdirTemp("", "tidings-bench-nats-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	conf := filepath.Join(dir, "nats.conf")
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`
listen: %s
http: %s
max_connections: %d
websocket {
  listen: "%s"
  no_tls: true
}
`, clientAddr, monitorAddr, o.conns+100, wsAddr)), 0o600)
	if err != nil {
		return result{}, err
	}
	bin, err := exec.LookPath(o.natsBin)
	if err != nil {
		return result{}, fmt.Errorf("find %s: %w", o.natsBin, err)
	}
	srv, err := proc.Start("/dev/stderr", nil, nil, bin, "-c", conf)
	if err != nil {
		return result{}, err
	}
	defer srv.Stop(syscall.SIGTERM)
	if err := srv.WaitHTTP(ctx, "http://"+monitorAddr+"/healthz", 30*time.Second); err != nil {
		return result{}, fmt.Errorf("nats-server: %w", err)
	}
	pub, err := nats.Connect("nats://"+clientAddr, nats.Name("bench-publisher"))
	if err != nil {
		return result{}, fmt.Errorf("connect publisher: %w", err)
	}
	defer pub.Close()
	t := &natsTarget{srv: srv, ws: "ws://" + wsAddr, pub: pub}
	version := "nats-server"
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		version = strings.TrimSpace(string(out))
	}
	return measure(ctx, kindNATS, version+" (WebSocket)", t, o)
}

func (t *natsTarget) pid() int { return t.srv.Cmd.Process.Pid }

func (t *natsTarget) connect(ctx context.Context, i int, rec *recorder) error {
	nc, err := nats.Connect(t.ws, nats.NoReconnect(), nats.Timeout(30*time.Second))
	if err != nil {
		return err
	}
	if _, err := nc.Subscribe(natsSubject, func(m *nats.Msg) { rec.deliver(m.Data) }); err != nil {
		nc.Close()
		return err
	}
	// The subscription is in force once the server has answered a ping
	// sent after it.
	if err := nc.FlushTimeout(30 * time.Second); err != nil {
		nc.Close()
		return err
	}
	t.mu.Lock()
	t.conns = append(t.conns, nc)
	t.mu.Unlock()
	return nil
}

func (t *natsTarget) publish(ctx context.Context, payload []byte) error {
	if err := t.pub.Publish(natsSubject, payload); err != nil {
		return err
	}
	return t.pub.FlushTimeout(10 * time.Second)
}

func (t *natsTarget) closeClients() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.conns {
		c.Close()
	}
	t.conns = nil
}
