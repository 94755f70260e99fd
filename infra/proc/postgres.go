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
	"syscall"
)

// PostgresOptions say where a throwaway PostgreSQL server runs.
type PostgresOptions struct {
	Dir    string // an empty directory: data, socket and log go there
	Listen string // listen_addresses, e.g. 127.0.0.1
	Port   string
	// NetNS, when set, runs the server inside that network namespace
	// (`ip netns exec`), so that tests can cut it off the network.
	NetNS string
	// TrustFrom, when set, is a network (CIDR) whose clients are trusted
	// too; initdb trusts only local ones.
	TrustFrom string
}

// StartPostgres runs initdb and postgres in o.Dir with trust
// authentication for the postgres user and fsync off. PostgreSQL refuses to
// run as root, so as root both run as the postgres user, who is given
// o.Dir. The server's log is o.Dir/server.log.
func StartPostgres(ctx context.Context, o PostgresOptions) (*Process, error) {
	initdb, err := PostgresBinary("initdb")
	if err != nil {
		return nil, err
	}
	postgres, err := PostgresBinary("postgres")
	if err != nil {
		return nil, err
	}
	cred, err := unprivileged(o.Dir)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(o.Dir, "data")
	initCmd := exec.CommandContext(ctx, initdb, "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
	initCmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initCmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	if o.TrustFrom != "" {
		hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		_, err = fmt.Fprintf(hba, "host all all %s trust\n", o.TrustFrom)
		if cerr := hba.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("pg_hba.conf: %w", err)
		}
	}
	bin, args := postgres, []string{"-D", data, "-p", o.Port, "-k", o.Dir,
		"-c", "listen_addresses=" + o.Listen, "-c", "fsync=off"}
	if o.NetNS != "" {
		// Entering a namespace takes root, so `ip` runs as root and
		// setpriv drops to the server's user just before exec.
		wrap := []string{"netns", "exec", o.NetNS}
		if cred != nil {
			wrap = append(wrap, "setpriv", "--reuid="+strconv.Itoa(int(cred.Uid)), "--regid="+strconv.Itoa(int(cred.Gid)), "--clear-groups")
		}
		bin, args, cred = "ip", append(append(wrap, postgres), args...), nil
	}
	return Start(filepath.Join(o.Dir, "server.log"), cred, nil, bin, args...)
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
