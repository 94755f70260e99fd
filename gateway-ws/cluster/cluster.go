// Package cluster is the gateway-ws node registry: every replica keeps a
// record of itself in Redis, refreshed by a heartbeat and expiring after a
// TTL, so that any replica (and the dashboard) can list the live ones. A
// replica that dies drops out when its TTL lapses; one that stops
// gracefully deregisters at once.
//
// Keys, under the deployment's Redis prefix:
//
//	<prefix>{nodes}:node:<id>  the node's JSON record, with the TTL (PX)
//	<prefix>{nodes}            a set of registered ids, so that listing needs no SCAN
//
// Listing drops ids whose record has expired, atomically (one Lua script),
// so a node that heartbeats concurrently is never lost for longer than one
// heartbeat. The heartbeat's MULTI and the listing script touch the set
// and the records together, so on a Redis Cluster they must all live in
// one slot: every key carries the hash tag {nodes}. The registry is a few
// small keys, so keeping them on one shard costs nothing.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/lib/config"
	"tidings/lib/logging"
)

// Settings are the registry's knobs; DefaultSettings holds the defaults.
type Settings struct {
	ID        string        `env:"NODE_ID"`        // this replica's id; empty means <hostname>-<random>
	Addr      string        `env:"NODE_ADDR"`      // the address peers and operators reach it at; empty means the listener's
	Heartbeat time.Duration `env:"NODE_HEARTBEAT"` // how often the record is refreshed
	TTL       time.Duration `env:"NODE_TTL"`       // how long a record outlives its last heartbeat
}

// DefaultSettings is Settings' defaults.
func DefaultSettings() Settings { return Settings{Heartbeat: 2 * time.Second, TTL: 10 * time.Second} }

// Validate refuses a TTL that does not outlast the heartbeat.
func (s Settings) Validate() error {
	if s.Heartbeat <= 0 || s.TTL <= s.Heartbeat {
		return fmt.Errorf("NODE_TTL (%s) must be longer than NODE_HEARTBEAT (%s), which must be positive", s.TTL, s.Heartbeat)
	}
	return nil
}

// Node is one replica's record.
type Node struct {
	ID          string    `json:"id"`
	Addr        string    `json:"addr"`
	StartedAt   time.Time `json:"started_at"`
	Version     string    `json:"version"`
	Connections int       `json:"connections"`
	Topics      int       `json:"topics"`
	SeenAt      time.Time `json:"seen_at"` // the last heartbeat, by the node's clock
}

// Config is what a Registry needs.
type Config struct {
	Redis    redis.UniversalClient
	Prefix   string // the deployment's Redis key prefix
	Settings Settings
	Version  string // empty means Version()
	// Load reports the node's current connection and topic counts; nil
	// reports zeros.
	Load func() (connections, topics int)
	Log  *slog.Logger // nil: no logs
}

// Registry registers one node and lists all of them.
type Registry struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	self    Node // Run sets its Addr while handlers read it
	failing bool // the last heartbeat failed; logged once per outage
}

// New returns a registry for this node; Run registers it.
func New(cfg Config) *Registry {
	def := DefaultSettings()
	config.OrDefault(&cfg.Settings.Heartbeat, def.Heartbeat)
	if cfg.Settings.TTL <= cfg.Settings.Heartbeat {
		cfg.Settings.TTL = max(def.TTL, 3*cfg.Settings.Heartbeat)
	}
	if cfg.Settings.ID == "" {
		cfg.Settings.ID = defaultID()
	}
	if cfg.Version == "" {
		cfg.Version = Version()
	}
	cfg.Log = logging.Or(cfg.Log)
	return &Registry{
		cfg: cfg,
		log: cfg.Log.With("node", cfg.Settings.ID),
		self: Node{
			ID:        cfg.Settings.ID,
			Addr:      cfg.Settings.Addr,
			StartedAt: time.Now().UTC(),
			Version:   cfg.Version,
		},
	}
}

// ID is this node's id.
func (r *Registry) ID() string { return r.self.ID }

// Settings are the registry's effective settings (defaults applied).
func (r *Registry) Settings() Settings { return r.cfg.Settings }

func (r *Registry) nodeKey(id string) string { return r.nodeKeyPrefix() + id }
func (r *Registry) nodeKeyPrefix() string    { return r.setKey() + ":node:" }
func (r *Registry) setKey() string           { return r.cfg.Prefix + "{nodes}" }

// Self is this node's record as its next heartbeat would write it.
func (r *Registry) Self() Node {
	r.mu.Lock()
	n := r.self
	r.mu.Unlock()
	if r.cfg.Load != nil {
		n.Connections, n.Topics = r.cfg.Load()
	}
	n.SeenAt = time.Now().UTC()
	return n
}

// Run registers the node at addr (unless Settings.Addr names another) and
// heartbeats until ctx ends, then deregisters it. A heartbeat that fails
// (Redis down) is logged once per outage and retried at the next tick;
// it never stops Run.
func (r *Registry) Run(ctx context.Context, addr string) {
	r.mu.Lock()
	if r.self.Addr == "" {
		r.self.Addr = addr
	}
	r.mu.Unlock()
	tick := time.NewTicker(r.cfg.Settings.Heartbeat)
	defer tick.Stop()
	for {
		r.beat(ctx)
		select {
		case <-ctx.Done():
			// ctx is over, but leaving is still worth a short call of its own.
			leaveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.callTimeout())
			defer cancel()
			if err := r.Deregister(leaveCtx); err != nil {
				r.log.Warn("could not deregister; the record expires after its TTL", "ttl", r.cfg.Settings.TTL, "err", err)
			}
			return
		case <-tick.C:
		}
	}
}

// callTimeout bounds one Redis call: a heartbeat must not outlast the next.
func (r *Registry) callTimeout() time.Duration { return min(r.cfg.Settings.Heartbeat, 2*time.Second) }

func (r *Registry) beat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.callTimeout())
	defer cancel()
	err := r.Heartbeat(ctx)
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return // stopping
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil && !r.failing:
		r.failing = true
		r.log.Warn("node heartbeat failed; retrying every heartbeat", "err", err)
	case err == nil && r.failing:
		r.failing = false
		r.log.Info("node heartbeat recovered")
	}
}

// Heartbeat writes the node's record once, with a fresh TTL.
func (r *Registry) Heartbeat(ctx context.Context) error {
	body, err := json.Marshal(r.Self())
	if err != nil {
		return err
	}
	pipe := r.cfg.Redis.TxPipeline()
	pipe.Set(ctx, r.nodeKey(r.self.ID), body, r.cfg.Settings.TTL)
	pipe.SAdd(ctx, r.setKey(), r.self.ID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("heartbeat of node %s: %w", r.self.ID, err)
	}
	return nil
}

// Deregister removes the node's record at once.
func (r *Registry) Deregister(ctx context.Context) error {
	pipe := r.cfg.Redis.TxPipeline()
	pipe.Del(ctx, r.nodeKey(r.self.ID))
	pipe.SRem(ctx, r.setKey(), r.self.ID)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("deregister node %s: %w", r.self.ID, err)
	}
	return nil
}

// listScript returns the records of the registered nodes and forgets the
// ids whose record has expired, in one step, so that a node's concurrent
// heartbeat (SET then SADD in MULTI) cannot be undone by a stale SREM. It
// builds the records' names from ARGV[1]: a cluster lets a script reach
// keys it did not declare only in the slot of those it did, which the
// shared hash tag ensures.
var listScript = redis.NewScript(`
local ids = redis.call('SMEMBERS', KEYS[1])
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('GET', ARGV[1] .. id)
  if v then
    table.insert(out, v)
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
`)

// Nodes lists the live nodes, by id.
func (r *Registry) Nodes(ctx context.Context) ([]Node, error) {
	raw, err := listScript.Run(ctx, r.cfg.Redis, []string{r.setKey()}, r.nodeKeyPrefix()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	nodes := make([]Node, 0, len(raw))
	for _, v := range raw {
		var n Node
		if err := json.Unmarshal([]byte(v), &n); err != nil {
			r.log.Warn("skipping a malformed node record", "err", err)
			continue
		}
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	return nodes, nil
}

// Node returns the live node id, or false when it has no record (never
// registered, deregistered, or its TTL lapsed).
func (r *Registry) Node(ctx context.Context, id string) (Node, bool, error) {
	raw, err := r.cfg.Redis.Get(ctx, r.nodeKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Node{}, false, nil
	}
	if err != nil {
		return Node{}, false, fmt.Errorf("read node %s: %w", id, err)
	}
	var n Node
	if err := json.Unmarshal(raw, &n); err != nil {
		return Node{}, false, fmt.Errorf("node %s: malformed record: %w", id, err)
	}
	return n, true, nil
}

// Version is the build's version: the module version when built from a
// tagged module, else the VCS revision (12 hex digits, "+dirty" when the
// tree had changes), else "dev".
func Version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev == "" {
		return "dev"
	}
	return rev[:min(12, len(rev))] + dirty
}

// defaultID is the host name plus a random suffix, so that two replicas on
// one host (or a restarted one whose old record has not expired) differ.
func defaultID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "gateway"
	}
	return host + "-" + strings.ToLower(rand.Text()[:8])
}
