package main

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"tidings/lib/testenv"
)

// TestEntryPointServesOneFunctionAsTheWatchdogUpstream builds the template's
// entry point and runs it the way of-watchdog does in http mode: FUNCTION
// names the function, the secrets come from files in SECRETS_DIR, it
// listens on UPSTREAM_PORT and answers /_/health.
func TestEntryPointServesOneFunctionAsTheWatchdogUpstream(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the entry point")
	}
	db := testenv.NewDB(t)
	bin := filepath.Join(t.TempDir(), "handler")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	secrets := t.TempDir()
	for name, value := range map[string]string{
		"tidings-jwt-secret":   string(testenv.JWTKey),
		"tidings-internal-key": "internal-key-for-tests",
	} {
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()

	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "FUNCTION=login", "UPSTREAM_PORT="+port, "SECRETS_DIR="+secrets,
		"DATABASE_URL="+db.URL, "REDIS_URL="+testenv.RedisURL(), "JWT_SECRET=", "INTERNAL_KEY=",
		"max_inflight=4", "exec_timeout=10s", "AWS_LAMBDA_RUNTIME_API=")
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	base := "http://127.0.0.1:" + port
	var health *http.Response
	for i := 0; i < 100; i++ { // up to ~10s for the process to listen
		r, err := http.Get(base + "/_/health")
		if err == nil {
			health = r
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if health == nil || health.StatusCode != 200 {
		t.Fatalf("/_/health did not answer 200; logs:\n%s", logs.String())
	}
	health.Body.Close()
	resp, err := http.Post(base+"/", "application/json", strings.NewReader(`{"email":"nobody@example.com","password":"nothing-here"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("login of an unknown user through the entry point: %d, want 401", resp.StatusCode)
	}
}

func TestEntryPointRefusesAnUnknownFunction(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the entry point")
	}
	cmd := exec.Command("go", "run", ".")
	cmd.Env = append(os.Environ(), "FUNCTION=no-such-function", "JWT_SECRET="+string(testenv.JWTKey),
		"INTERNAL_KEY=k", "SECRETS_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `no function named \"no-such-function\"`) {
		t.Errorf("an unknown FUNCTION must stop the process with a clear error; got %v:\n%s", err, out)
	}
}
