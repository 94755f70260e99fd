package testenv

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"tidings/infra/proc"
	"tidings/lib/store"
)

// Partition is a network namespace joined to the test's own by a veth
// pair, for servers a test cuts off the network. Cut makes the namespace
// drop every packet (iptables DROP rules inside it, so no RST and no ICMP
// come back: connections stay half-open and dials hang, as across a real
// partition); Heal lets packets through again.
//
// It needs root (network namespaces) and the `ip` and `iptables` commands
// (Debian packages iproute2 and iptables; infra/test-services.sh installs
// them); without root the test is skipped.
type Partition struct {
	t      testing.TB
	ns     string // namespace name
	hostIf string // the veth end on the test's side
	host   string // the test side's address
	addr   string // the namespace side's address: servers listen here
	subnet string // both, as a CIDR

	mu  sync.Mutex
	cut bool
}

// NewPartition creates the namespace and its link; both are removed when
// t ends, after the servers started in it.
func NewPartition(t testing.TB) *Partition {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("partition tests need root (network namespaces and iptables); run them as root")
	}
	for _, bin := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("partition tests need %q (packages iproute2 and iptables; infra/test-services.sh installs them): %v", bin, err)
		}
	}
	id := uniqueName()[:8] // interface names have at most 15 bytes
	p := &Partition{t: t, ns: "tdp" + id, hostIf: "tdp" + id + "h"}
	p.pickSubnet()
	p.run("ip", "netns", "add", p.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", p.ns).Run() })
	nsIf := "tdp" + id + "n"
	p.run("ip", "link", "add", p.hostIf, "type", "veth", "peer", "name", nsIf, "netns", p.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", p.hostIf).Run() })
	p.run("ip", "addr", "add", p.host+"/30", "dev", p.hostIf)
	p.run("ip", "link", "set", p.hostIf, "up")
	p.inside("ip", "addr", "add", p.addr+"/30", "dev", nsIf)
	p.inside("ip", "link", "set", nsIf, "up")
	p.inside("ip", "link", "set", "lo", "up")
	return p
}

// pickSubnet chooses a /30 in 10.200.0.0/13 that no interface uses yet, so
// partitions of concurrent tests never share addresses.
func (p *Partition) pickSubnet() {
	out, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		p.t.Fatalf("ip addr show: %v", err)
	}
	for range 100 {
		n := rand.N(1 << 17) // /30s in a /13
		base := fmt.Sprintf("10.%d.%d.", 200+n>>14, (n>>6)&0xff)
		last := (n & 0x3f) * 4
		host, ns := base+fmt.Sprint(last+1), base+fmt.Sprint(last+2)
		if !strings.Contains(string(out), " "+host+"/") && !strings.Contains(string(out), " "+ns+"/") {
			p.host, p.addr, p.subnet = host, ns, fmt.Sprintf("%s%d/30", base, last)
			return
		}
	}
	p.t.Fatal("no free /30 found in 10.200.0.0/13")
}

// Addr is the address servers in the namespace listen on.
func (p *Partition) Addr() string { return p.addr }

// Cut drops every packet entering or leaving the namespace; cutting a cut
// partition changes nothing.
func (p *Partition) Cut() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return
	}
	p.cut = true
	p.inside("iptables", "-w", "-I", "INPUT", "-j", "DROP")
	p.inside("iptables", "-w", "-I", "OUTPUT", "-j", "DROP")
}

// Heal lets packets through again; connections the partition did not
// break carry on. Healing a whole partition changes nothing.
func (p *Partition) Heal() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		return
	}
	p.cut = false
	p.inside("iptables", "-w", "-D", "INPUT", "-j", "DROP")
	p.inside("iptables", "-w", "-D", "OUTPUT", "-j", "DROP")
}

// StartRedis starts a throwaway redis-server (no persistence) inside the
// namespace; it is killed when t ends.
func (p *Partition) StartRedis() *RedisServer {
	p.t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		p.t.Fatalf("redis-server is needed: %v", err)
	}
	s := &RedisServer{t: p.t, bin: bin, host: p.addr, port: 6379, netns: p.ns, dir: p.t.TempDir()}
	s.Start()
	p.t.Cleanup(s.Stop)
	p.t.Cleanup(p.Heal) // first: a server stops faster with its clients reachable
	return s
}

// StartPostgres starts a throwaway PostgreSQL server inside the namespace
// (initdb and postgres as the postgres user) and returns a migrated
// database on it; the server is stopped when t ends.
func (p *Partition) StartPostgres() *DB {
	p.t.Helper()
	dir, err := os.MkdirTemp("", "tidings-partition-pg-")
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	server, err := proc.StartPostgres(ctx, proc.PostgresOptions{
		Dir: dir, Listen: p.addr, Port: "5432", NetNS: p.ns, TrustFrom: p.subnet,
	})
	if err != nil {
		os.RemoveAll(dir)
		p.t.Fatalf("start PostgreSQL in namespace %s: %v", p.ns, err)
	}
	p.t.Cleanup(func() {
		server.Stop(syscall.SIGQUIT) // immediate shutdown
		os.RemoveAll(dir)
	})
	p.t.Cleanup(p.Heal) // first: a server stops faster with its clients reachable
	u := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", net.JoinHostPort(p.addr, "5432"))
	err = proc.WaitFor(ctx, time.Minute, func(ctx context.Context) error {
		pool, err := store.Open(ctx, u)
		if err == nil {
			pool.Close()
		}
		return err
	})
	if err != nil {
		p.t.Fatalf("PostgreSQL in namespace %s does not answer (log in %s): %v", p.ns, dir, err)
	}
	pool, err := store.Open(ctx, u)
	if err == nil {
		err = store.Single(pool).Migrate(ctx, nil)
	}
	if err != nil {
		p.t.Fatalf("migrate PostgreSQL in namespace %s: %v", p.ns, err)
	}
	p.t.Cleanup(pool.Close)
	return &DB{Pool: pool, URL: u}
}

// run runs a command in the test's namespace, failing t on error.
func (p *Partition) run(bin string, args ...string) {
	p.t.Helper()
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		p.t.Fatalf("%s %s: %v: %s", bin, strings.Join(args, " "), err, out)
	}
}

// inside runs a command inside the partition's namespace.
func (p *Partition) inside(args ...string) {
	p.t.Helper()
	p.run("ip", append([]string{"netns", "exec", p.ns}, args...)...)
}

// String names the partition in failure messages.
func (p *Partition) String() string { return "partition " + p.ns + " (" + p.addr + ")" }
