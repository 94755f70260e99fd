package main

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// TestMakeUpStartsEverythingAndCtrlCStopsIt runs `make up` as a user would,
// with the default ports pointed at free ones so nothing answers there: it
// must start its own PostgreSQL and Redis, print its URLs, answer login,
// keep the directory and each participant's tables in databases of their
// own, and after Ctrl-C (SIGINT to the terminal's process group) leave no
// process behind.
func TestMakeUpStartsEverythingAndCtrlCStopsIt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	pgPort, redisPort, fnPort, gwPort := freePort(t), freePort(t), freePort(t), freePort(t)
	root, _ := filepath.Abs("../..")
	cmd := exec.Command("make", "-s", "up")
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"DATABASE_URL=", "PERSIST_DATABASE_URL=", "COUNTER_DATABASE_URL=", "REDIS_URL=", "SECRETS_DIR=",
		"DEV_POSTGRES_PORT="+pgPort, "DEV_REDIS_PORT="+redisPort,
		"FUNCTIONS_ADDR=127.0.0.1:"+fnPort, "GATEWAY_ADDR=127.0.0.1:"+gwPort, "DEV_STATE_DIR="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, _ := cmd.StdoutPipe()
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()

	// The bar: URLs printed and login answering within a minute.
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var printed []string
	loginURL := ""
	deadline := time.After(time.Minute)
wait:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("make up ended before it was up:\n%s\n%s", strings.Join(printed, "\n"), stderr)
			}
			printed = append(printed, line)
			if m := regexp.MustCompile(`login\s+(http://\S+)`).FindStringSubmatch(line); m != nil {
				loginURL = m[1]
			}
			if strings.Contains(line, "Ctrl-C") {
				break wait
			}
		case <-deadline:
			t.Fatalf("make up printed no URLs within a minute:\n%s\n%s", strings.Join(printed, "\n"), stderr)
		}
	}
	if loginURL != "http://127.0.0.1:"+fnPort+"/function/login" {
		t.Fatalf("login URL %q; output:\n%s", loginURL, strings.Join(printed, "\n"))
	}
	for _, want := range []string{"127.0.0.1:" + pgPort, "127.0.0.1:" + redisPort, "ws://127.0.0.1:" + gwPort + "/socket/websocket"} {
		if !strings.Contains(strings.Join(printed, "\n"), want) {
			t.Errorf("output does not show the throwaway server at %s:\n%s", want, strings.Join(printed, "\n"))
		}
	}
	// login answers directly and through gateway-ws's pass-through.
	for _, url := range []string{loginURL, "http://127.0.0.1:" + gwPort + "/function/login"} {
		resp, err := http.Post(url, "application/json", strings.NewReader(`{"email":"nobody@example.com","password":"whatever-it-is"}`))
		if err != nil {
			t.Fatalf("login at %s: %v", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("login of an unknown user at %s: %d, want 401", url, resp.StatusCode)
		}
	}

	checkSeparateDatabases(t, strings.Join(printed, "\n"))

	// Ctrl-C in a terminal signals the whole foreground process group.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("make up did not stop within 30s of Ctrl-C:\n%s", stderr)
	}
	for _, port := range []string{pgPort, redisPort, fnPort, gwPort} {
		if answers("127.0.0.1:" + port) {
			t.Errorf("port %s still answers after Ctrl-C", port)
		}
	}
	if left := processesMentioning(pgPort, redisPort); len(left) > 0 {
		t.Errorf("processes left behind after Ctrl-C: %v", left)
	}
}

// checkSeparateDatabases reads the three database URLs `make up` printed
// and checks each holds its own tables and none of the others'.
func checkSeparateDatabases(t *testing.T, printed string) {
	t.Helper()
	ctx := context.Background()
	owns := map[string]string{"DATABASE_URL": "users", "PERSIST_DATABASE_URL": "notifications", "COUNTER_DATABASE_URL": "counters"}
	urls := map[string]string{}
	for env := range owns {
		m := regexp.MustCompile(`\b` + env + `=(\S+)`).FindStringSubmatch(printed)
		if m == nil {
			t.Fatalf("make up does not print %s:\n%s", env, printed)
		}
		urls[env] = m[1]
	}
	for env, url := range urls {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatalf("%s %s: %v", env, url, err)
		}
		for other, table := range owns {
			var exists bool
			if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
				t.Fatal(err)
			}
			if want := other == env; exists != want {
				t.Errorf("%s (%s): table %s exists %v, want %v", env, url, table, exists, want)
			}
		}
		conn.Close(ctx)
	}
}

// processesMentioning lists running processes whose command line carries
// one of the given port arguments.
func processesMentioning(ports ...string) []string {
	var found []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		for i, a := range args {
			for _, p := range ports {
				if (a == "-p" || a == "--port") && i+1 < len(args) && args[i+1] == p {
					found = append(found, strings.Join(args, " "))
				}
			}
		}
	}
	return found
}
