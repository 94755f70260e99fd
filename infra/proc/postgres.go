package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresOptions say where a throwaway PostgreSQL server runs.
type PostgresOptions struct {
	Dir    string // data (Dir/data), socket and log go there; empty before InitPostgres
	Listen string // listen_addresses, e.g. 127.0.0.1
	Port   string
	// NetNS, when set, runs the server inside that network namespace
	// (`ip netns exec`), so that tests can cut it off the network.
	NetNS string
	// TrustFrom, when set, is a network (CIDR) whose clients are trusted
	// too; initdb trusts only local ones.
	TrustFrom string
	// ClusterName, when set, is the server's cluster_name: `ps` shows it
	// on the postmaster and on every process of the server.
	ClusterName string
	// Durable runs the server with fsync on, as a production server runs,
	// for benchmarks comparing it with one that does. Off by default: a
	// server killed alone loses nothing its writes left in the OS's cache.
	Durable bool
}

// PostgresReadyWithin bounds RunPostgres's wait for connections, crash
// recovery included.
const PostgresReadyWithin = time.Minute

// StartPostgres runs InitPostgres and then RunPostgres: a new server in an
// empty o.Dir, accepting connections when it returns.
func StartPostgres(ctx context.Context, o PostgresOptions) (*Process, error) {
	if err := InitPostgres(ctx, o); err != nil {
		return nil, err
	}
	return RunPostgres(ctx, o)
}

// InitPostgres runs initdb into o.Dir/data with trust authentication for
// the postgres user (and for o.TrustFrom). PostgreSQL refuses to run as
// root, so as root initdb runs as the postgres user, who is given o.Dir.
func InitPostgres(ctx context.Context, o PostgresOptions) error {
	initdb, err := PostgresBinary("initdb")
	if err != nil {
		return err
	}
	cred, err := unprivileged(o.Dir)
	if err != nil {
		return err
	}
	data := PostgresData(o.Dir)
	initCmd := exec.CommandContext(ctx, initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
	initCmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initCmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v: %s", err, out)
	}
	if o.TrustFrom == "" {
		return nil
	}
	hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(hba, "host all all %s trust\n", o.TrustFrom)
	if cerr := hba.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pg_hba.conf: %w", err)
	}
	return nil
}

// RunPostgres starts postgres, fsync off unless o.Durable, on the data
// directory o.Dir/data that InitPostgres made (or a copy of one), and waits
// until it accepts connections: after a kill, that is after crash
// recovery. As root it runs as the postgres user, who is given o.Dir. The
// server's log is o.Dir/server.log.
func RunPostgres(ctx context.Context, o PostgresOptions) (*Process, error) {
	postgres, err := PostgresBinary("postgres")
	if err != nil {
		return nil, err
	}
	cred, err := unprivileged(o.Dir)
	if err != nil {
		return nil, err
	}
	fsync := "off"
	if o.Durable {
		fsync = "on"
	}
	bin, args := postgres, []string{"-D", PostgresData(o.Dir), "-p", o.Port, "-k", o.Dir,
		"-c", "listen_addresses=" + o.Listen, "-c", "fsync=" + fsync}
	if o.ClusterName != "" {
		args = append(args, "-c", "cluster_name="+o.ClusterName)
	}
	if o.NetNS != "" {
		// Entering a namespace takes root, so `ip` runs as root and
		// setpriv drops to the server's user just before exec.
		wrap := []string{"netns", "exec", o.NetNS}
		if cred != nil {
			wrap = append(wrap, "setpriv", "--reuid="+strconv.Itoa(int(cred.Uid)), "--regid="+strconv.Itoa(int(cred.Gid)), "--clear-groups")
		}
		bin, args, cred = "ip", append(append(wrap, postgres), args...), nil
	}
	log := filepath.Join(o.Dir, "server.log")
	p, err := Start(log, cred, nil, bin, args...)
	if err != nil {
		return nil, err
	}
	// The socket in o.Dir is reachable from any network namespace.
	socket := fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres sslmode=disable", o.Dir, o.Port)
	err = p.WaitReady(ctx, PostgresReadyWithin, func(ctx context.Context) error {
		conn, err := pgx.Connect(ctx, socket)
		if err == nil {
			err = conn.Close(ctx)
		}
		return err
	})
	if err != nil {
		p.Kill()
		return nil, fmt.Errorf("postgres on port %s does not accept connections (log in %s): %w", o.Port, log, err)
	}
	return p, nil
}

// PostgresData is the data directory of a server in dir.
func PostgresData(dir string) string { return filepath.Join(dir, "data") }

// PostgresVersion is `postgres --version`, e.g.
// "postgres (PostgreSQL) 15.20".
func PostgresVersion() (string, error) {
	postgres, err := PostgresBinary("postgres")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(postgres, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("postgres --version: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// unprivileged returns the credential to run a server as: nil for a normal
// user, the postgres user (owning dir) for root.
func unprivileged(dir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, errors.New("running as root and there is no postgres user to run PostgreSQL as")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
