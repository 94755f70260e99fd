// Package stackrun runs a throwaway tidings stack as real processes for
// the tools that measure or torture it (`make chaos`, `make bench`): its
// own database and Redis prefix on the local servers (and, if asked, the
// participants' databases apart: OwnParticipantDatabases), fresh secrets,
// the function host, and gateway-ws replicas, each a process that can be
// killed and started again on the same address.
package stackrun

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"tidings/infra/proc"
	"tidings/lib/config"
	"tidings/lib/store"
	"tidings/lib/testenv"
)

// Settings are what a tool running a stack reads from its environment
// (config.Parse).
type Settings struct {
	// Keep leaves the stack's files (binaries, logs) behind after Close,
	// for reading the logs.
	Keep bool `env:"STACK_KEEP"`
}

// Stack is a running throwaway stack.
type Stack struct {
	Settings
	Dir      string
	DBURL    string
	RedisURL string
	Prefix   string
	Pool     *pgxpool.Pool // the directory's database (DBURL)
	// DBs are pools on the stack's three databases, and URLs their URLs:
	// all Pool and DBURL, until OwnParticipantDatabases gives the
	// participants databases of their own.
	DBs   store.DBs
	URLs  config.Databases
	Redis redis.UniversalClient

	bin            string // where the binaries are
	dbName         string
	common         []string
	nodes          []*Node
	redisServer    *RedisServer       // nil: the shared server
	redisCluster   *proc.RedisCluster // nil: none of its own
	participantDBs []*ParticipantDB
}

// Binaries are the programs a stack runs (the function host and
// gateway-ws), built once by Build for as many stacks as a tool makes.
type Binaries struct{ dir string }

// Build builds the binaries into dir.
func Build(ctx context.Context, dir string) (Binaries, error) {
	for _, b := range [][2]string{{"devstack", "./infra/devstack"}, {"gateway", "./gateway-ws"}} {
		out, err := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, b[0]), b[1]).CombinedOutput()
		if err != nil {
			return Binaries{}, fmt.Errorf("build %s: %v\n%s", b[1], err, out)
		}
	}
	return Binaries{dir}, nil
}

// New builds the binaries into the stack's directory and makes the
// database, Redis prefix and secrets.
func New(ctx context.Context, name string, settings Settings) (*Stack, error) {
	return newStack(ctx, name, settings, nil)
}

// New makes a stack running b: New without the build.
func (b Binaries) New(ctx context.Context, name string, settings Settings) (*Stack, error) {
	return newStack(ctx, name, settings, &b)
}

func newStack(ctx context.Context, name string, settings Settings, b *Binaries) (*Stack, error) {
	s := &Stack{Settings: settings}
	var err error
	if s.Dir, err = os.MkdirTemp("", "tidings-"+name+"-"); err != nil {
		return nil, err
	}
	if b == nil {
		built, err := Build(ctx, s.Dir)
		if err != nil {
			s.Close()
			return nil, err
		}
		b = &built
	}
	s.bin = b.dir
	suffix := strings.ToLower(rand.Text()[:8])
	s.dbName, s.Prefix = "tidings_"+name+"_"+suffix, "tidings-"+name+":"+suffix+":"
	if s.DBURL, err = createDatabase(ctx, testenv.AdminURL(), s.dbName); err != nil {
		s.dbName = "" // not the stack's to drop
		s.Close()
		return nil, err
	}
	s.URLs = config.Databases{Directory: s.DBURL, Persist: s.DBURL, Counter: s.DBURL}
	if s.Pool, err = store.Open(ctx, s.DBURL); err == nil {
		s.DBs = store.Single(s.Pool)
		err = s.DBs.Migrate(ctx, nil)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	s.RedisURL = testenv.RedisURL()
	rc, err := config.ParseRedis(s.RedisURL)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.Redis = rc.Client()
	secrets := filepath.Join(s.Dir, "secrets")
	_ = os.MkdirAll(secrets, 0o700)
	for _, name := range []string{config.JWTSecret, config.InternalKey} {
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(rand.Text()+rand.Text()), 0o600); err != nil {
			s.Close()
			return nil, err
		}
	}
	// The one database holds all three schemas: participants' URLs the
	// shell exported (make up prints them) must not lead elsewhere.
	s.common = []string{"DATABASE_URL=" + s.DBURL, "PERSIST_DATABASE_URL=", "COUNTER_DATABASE_URL=",
		"REDIS_URL=" + s.RedisURL, "REDIS_PREFIX=" + s.Prefix,
		"SECRETS_DIR=" + secrets, "LOG_LEVEL=warn", "JWT_SECRET=", "INTERNAL_KEY=",
		// The tools drive a few users far past a person's quotas on purpose.
		"QUOTA_PUBLISHES=off", "QUOTA_TOPICS=off", "QUOTA_JOBS=off"}
	return s, nil
}

// StartHost starts the function host (the participants) with env added.
func (s *Stack) StartHost(ctx context.Context, env ...string) (*Node, error) {
	addr := FreeAddr()
	n := &Node{Name: "functions", Addr: addr, bin: filepath.Join(s.bin, "devstack"), args: []string{"-gateway=false"},
		logPath: filepath.Join(s.Dir, "functions.log"), env: append(append(s.common, "FUNCTIONS_ADDR="+addr), env...)}
	return n, s.start(ctx, n)
}

// StartGateway starts a gateway-ws replica calling functions at host.
func (s *Stack) StartGateway(ctx context.Context, host *Node, env ...string) (*Node, error) {
	addr := FreeAddr()
	i := len(s.nodes)
	n := &Node{Name: fmt.Sprintf("gateway-%d", i), Addr: addr, bin: filepath.Join(s.bin, "gateway"),
		logPath: filepath.Join(s.Dir, fmt.Sprintf("gateway-%d.log", i)),
		env:     append(append(s.common, "GATEWAY_ADDR="+addr, "FAAS_URL=http://"+host.Addr), env...)}
	return n, s.start(ctx, n)
}

func (s *Stack) start(ctx context.Context, n *Node) error {
	s.nodes = append(s.nodes, n)
	if err := n.Start(ctx); err != nil {
		return fmt.Errorf("start %s: %w (log %s)", n.Name, err, n.logPath)
	}
	return nil
}

// Close stops every process and removes the database, keys and files
// (the files stay when Keep is set, for reading the logs).
func (s *Stack) Close() {
	for _, n := range s.nodes {
		n.Stop()
	}
	if s.redisServer != nil {
		defer s.redisServer.stop()
	}
	if s.redisCluster != nil {
		defer s.redisCluster.Stop()
	}
	for _, db := range s.participantDBs {
		db.remove(s.Keep)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.Pool != nil {
		s.Pool.Close()
	}
	if s.dbName != "" {
		testenv.DropDatabase(s.dbName)
	}
	if s.Redis != nil {
		testenv.DeleteKeys(ctx, s.Redis, s.Prefix)
		s.Redis.Close()
	}
	if s.Dir != "" && !s.Keep {
		os.RemoveAll(s.Dir)
	}
}

// Node is one process of the stack, restartable on its address.
type Node struct {
	Name, Addr string

	bin, logPath string
	args, env    []string
	mu           sync.Mutex
	p            *proc.Process
	kills        int
}

// Start starts the process and waits until /healthz answers.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	p, err := proc.Start(n.logPath, nil, n.env, n.bin, n.args...)
	if err != nil {
		return err
	}
	n.p = p
	if err := p.WaitHTTP(ctx, "http://"+n.Addr+"/healthz", 30*time.Second); err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	return nil
}

// Kill ends the process with SIGKILL, as a crash would.
func (n *Node) Kill() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p != nil {
		n.p.Kill()
		n.kills++
	}
}

// Stop ends the process gracefully.
func (n *Node) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p != nil {
		n.p.Stop(syscall.SIGTERM)
	}
}

// Exited reports whether the process is no longer running.
func (n *Node) Exited() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.p == nil {
		return true
	}
	select {
	case <-n.p.Exited():
		return true
	default:
		return false
	}
}

// Kills counts the SIGKILLs sent to the node.
func (n *Node) Kills() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.kills
}

// Pid is the process's id, for reading its memory.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.p.Cmd.Process.Pid
}

// Post sends body as JSON with an optional Bearer token and decodes a 2xx
// answer into out.
func Post(ctx context.Context, target, token string, body, out any) error {
	b, _ := json.Marshal(body)
	return call(ctx, http.MethodPost, target, token, bytes.NewReader(b), out)
}

// Get asks for target with an optional Bearer token and decodes a 2xx
// answer into out.
func Get(ctx context.Context, target, token string, out any) error {
	return call(ctx, http.MethodGet, target, token, nil, out)
}

func call(ctx context.Context, method, target, token string, body io.Reader, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %d %s", method, target, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr() string { return proc.FreeAddr() }

// RedisServer is a stack's own redis-server, run as tidings runs Redis
// (proc.RedisPersistence), that a tool can kill and start again, with its
// data or empty.
type RedisServer struct {
	Addr string

	bin, dir string
	mu       sync.Mutex
	p        *proc.Process
}

// OwnRedis starts a redis-server of the stack's own and points the stack
// at it, instead of the shared server; call it before starting any node.
func (s *Stack) OwnRedis(ctx context.Context) (*RedisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("a Redis of its own needs redis-server: %w", err)
	}
	r := &RedisServer{Addr: FreeAddr(), bin: bin, dir: filepath.Join(s.Dir, "redis")}
	if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return nil, err
	}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	s.redisServer = r
	return r, s.useRedis("redis://" + r.Addr + "/0")
}

// OwnRedisCluster starts a throwaway Redis Cluster of the stack's own
// (masters, each with replicas; proc.StartRedisCluster) and points the
// stack at it; call it before starting any node. The cluster is killed
// when the stack closes.
func (s *Stack) OwnRedisCluster(ctx context.Context, masters, replicas int) (*proc.RedisCluster, error) {
	c, err := proc.StartRedisCluster(ctx, filepath.Join(s.Dir, "redis-cluster"), masters, replicas)
	if err != nil {
		return nil, err
	}
	s.redisCluster = c
	return c, s.useRedis(c.URL())
}

// useRedis points the stack, and the nodes started from now on, at url.
func (s *Stack) useRedis(url string) error {
	rc, err := config.ParseRedis(url)
	if err != nil {
		return err
	}
	s.RedisURL = url
	_ = s.Redis.Close()
	s.Redis = rc.Client()
	// Clipped: the nodes append to common, and must not share its array.
	s.common = slices.Clip(append(s.common, "REDIS_URL="+s.RedisURL))
	return nil
}

// Start runs the server (again) and waits until it answers.
func (r *RedisServer) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	host, port, _ := net.SplitHostPort(r.Addr)
	args := append([]string{"--port", port, "--bind", host, "--save", "", "--dir", r.dir}, proc.RedisPersistence...)
	p, err := proc.Start(filepath.Join(r.dir, "server.log"), nil, nil, r.bin, args...)
	if err != nil {
		return err
	}
	r.p = p
	rc, err := config.ParseRedis("redis://" + r.Addr + "/0")
	if err != nil {
		return err
	}
	c := rc.NoRetries().Client()
	defer c.Close()
	return proc.WaitFor(ctx, 15*time.Second, func(ctx context.Context) error { return c.Ping(ctx).Err() })
}

// Kill ends the server with SIGKILL; with wipe, its files go too, so the
// next Start begins empty, as a Redis that lost its disk would.
func (r *RedisServer) Kill(wipe bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != nil {
		r.p.Kill()
		r.p = nil
	}
	if wipe {
		entries, _ := os.ReadDir(r.dir)
		for _, e := range entries {
			if e.Name() != "server.log" {
				_ = os.RemoveAll(filepath.Join(r.dir, e.Name()))
			}
		}
	}
}

func (r *RedisServer) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.p != nil {
		r.p.Stop(syscall.SIGTERM)
	}
}

// ParticipantDB is a 2PC participant's database (persist's or counter's)
// of the stack's own: on a PostgreSQL server of its own
// (proc.PostgresServer), that a tool can kill, alone, and start again on
// the same data directory, or on the shared server (Placement).
type ParticipantDB struct {
	Schema store.Schema
	URL    string
	Pool   *pgxpool.Pool // the tool's own; its connections break at a kill, Start drops them

	name   string
	server *proc.PostgresServer // nil: on the shared server
	mu     sync.Mutex
	kills  int
}

// Placement says where OwnParticipantDatabases puts the participants'
// databases.
type Placement struct {
	// SharedServer makes each a database on the shared server
	// (testenv.AdminURL), beside the directory's: apart as in production,
	// but not to be killed alone. By default each gets a server of its own.
	SharedServer bool
	// Durable runs the servers of their own with fsync on, as the shared
	// server runs, for measuring them alike; off by default, as for every
	// throwaway server (proc.PostgresOptions.Durable).
	Durable bool
}

// OwnParticipantDatabases makes a migrated database for each participant,
// persist and counter, where p says, and points the stack at them
// (PERSIST_DATABASE_URL, COUNTER_DATABASE_URL); the directory stays in the
// stack's first database. Call it before starting any node.
func (s *Stack) OwnParticipantDatabases(ctx context.Context, p Placement) (persist, counter *ParticipantDB, err error) {
	if p.SharedServer && p.Durable {
		return nil, nil, errors.New("participants' databases: Durable is for servers of their own, not the shared server")
	}
	if err := s.remakeDirectory(ctx); err != nil {
		return nil, nil, err
	}
	for _, schema := range []store.Schema{store.Persist, store.Counter} {
		db, err := s.ownDatabase(ctx, schema, p)
		if err != nil {
			return nil, nil, fmt.Errorf("%s database: %w", schema.Name, err)
		}
		switch schema {
		case store.Persist:
			persist, s.DBs.Persist, s.URLs.Persist = db, db.Pool, db.URL
		case store.Counter:
			counter, s.DBs.Counter, s.URLs.Counter = db, db.Pool, db.URL
		}
	}
	// Clipped: the nodes append to common, and must not share its array.
	s.common = slices.Clip(append(s.common, "PERSIST_DATABASE_URL="+persist.URL, "COUNTER_DATABASE_URL="+counter.URL))
	return persist, counter, nil
}

// remakeDirectory makes the directory's database again, with the
// directory's tables only: New migrated every schema into it, for a stack
// whose participants keep their tables there, and a node reaching for a
// participant's table in the wrong database must fail, not succeed there.
func (s *Stack) remakeDirectory(ctx context.Context) error {
	s.Pool.Close()
	testenv.DropDatabase(s.dbName)
	var err error
	if _, err = createDatabase(ctx, testenv.AdminURL(), s.dbName); err == nil {
		s.Pool, err = store.Open(ctx, s.DBURL)
	}
	if err != nil {
		s.Pool = nil
		return fmt.Errorf("directory database: %w", err)
	}
	s.DBs.Directory = s.Pool
	return store.Directory.Migrate(ctx, s.Pool, nil)
}

// createDatabase makes the database name on the server of admin and
// returns its URL.
func createDatabase(ctx context.Context, admin, name string) (string, error) {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return testenv.WithDatabase(admin, name), nil
}

// ownDatabase makes the schema's database where p says, starting its
// server if it has one of its own.
func (s *Stack) ownDatabase(ctx context.Context, schema store.Schema, p Placement) (*ParticipantDB, error) {
	db := &ParticipantDB{Schema: schema, name: s.dbName + "_" + schema.Name}
	admin := testenv.AdminURL()
	if !p.SharedServer {
		server, err := proc.NewPostgresServer(ctx, db.name, p.Durable)
		if err != nil {
			return nil, err
		}
		db.server, admin = server, server.AdminURL()
	}
	s.participantDBs = append(s.participantDBs, db) // Close removes it from here on
	var err error
	if db.URL, err = createDatabase(ctx, admin, db.name); err != nil {
		return nil, err
	}
	if db.Pool, err = store.Open(ctx, db.URL); err != nil {
		return nil, err
	}
	return db, schema.Migrate(ctx, db.Pool, nil)
}

// errShared is Kill's and Start's answer on the shared server, which
// other databases live on.
var errShared = errors.New("on the shared server, which is not the stack's to kill or start")

// Kill ends the database's server as a crash would: SIGKILL to every one
// of its processes.
func (d *ParticipantDB) Kill() error {
	if d.server == nil {
		return fmt.Errorf("kill the %s database: %w", d.Schema.Name, errShared)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.kills++
	return d.server.Kill()
}

// Start runs the server again on its data directory, waits until it
// accepts connections (crash recovery done), and closes Pool's connections
// broken by the kill.
func (d *ParticipantDB) Start(ctx context.Context) error {
	if d.server == nil {
		return fmt.Errorf("start the %s database: %w", d.Schema.Name, errShared)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.server.Start(ctx); err != nil {
		return err
	}
	d.Pool.Reset()
	return nil
}

// Kills counts the kills of the database's server.
func (d *ParticipantDB) Kills() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.kills
}

// remove drops the database from the shared server, or kills its own
// server and deletes its files, or with keep only kills it and says where
// its files are.
func (d *ParticipantDB) remove(keep bool) {
	if d.Pool != nil {
		d.Pool.Close()
	}
	if d.server == nil {
		testenv.DropDatabase(d.name)
		return
	}
	var err error
	if keep {
		err = d.server.Kill()
		fmt.Fprintf(os.Stderr, "kept the %s database: %s\n", d.Schema.Name, d.server)
	} else {
		err = d.server.Remove()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}
