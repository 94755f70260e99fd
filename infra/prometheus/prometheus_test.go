// Package prometheus holds the project's Prometheus configuration and the
// test that runs a real Prometheus with it.
package prometheus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"tidings/infra/grafana"
	"tidings/infra/proc"
	"tidings/lib/testenv"
)

// start runs a command in its own process group, killed when the test ends.
func start(t *testing.T, name string, env []string, bin string, args ...string) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", name, lastLines(string(b), 30))
		}
	})
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func call(t *testing.T, method, target, token string, body any, out any) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, target, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %d %s", method, target, resp.StatusCode, raw)
	}
	if out != nil {
		_ = json.Unmarshal(raw, out)
	}
}

// TestPrometheusScrapesTheDevStackAndEveryDashboardQueryHasData starts the
// dev stack (`make up`'s devstack) on its own database and ports, drives it
// (calls, a socket, publishes with mail, a job), then starts Debian's
// Prometheus with infra/prometheus/prometheus.yml (its targets moved to
// those ports, its interval shortened): every target must be up and every
// query of the Grafana dashboard must return data.
func TestPrometheusScrapesTheDevStackAndEveryDashboardQueryHasData(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the dev stack and Prometheus")
	}
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed (Debian package prometheus; make test installs it)")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "devstack")
	if out, err := exec.Command("go", "build", "-o", bin, "../devstack").CombinedOutput(); err != nil {
		t.Fatalf("build devstack: %v\n%s", err, out)
	}
	suffix := strings.ToLower(rand.Text())
	dbName := "tidings_test_prom_" + suffix
	t.Cleanup(func() {
		// The directory and the participants' two that devstack creates
		// beside it (its devDatabases).
		for _, db := range []string{dbName, dbName + "_persist", dbName + "_counter"} {
			testenv.DropDatabase(db)
		}
	})
	secrets := filepath.Join(dir, "secrets")
	_ = os.Mkdir(secrets, 0o700)
	_ = os.WriteFile(filepath.Join(secrets, "tidings-jwt-secret"), []byte(hex.EncodeToString(make([]byte, 32))+"x"), 0o600)
	_ = os.WriteFile(filepath.Join(secrets, "tidings-internal-key"), []byte("prometheus-test-key"), 0o600)
	fnAddr, gwAddr := proc.FreeAddr(), proc.FreeAddr()
	start(t, "devstack", []string{"FUNCTIONS_ADDR=" + fnAddr, "GATEWAY_ADDR=" + gwAddr,
		"REDIS_PREFIX=tidings-test:prom-" + suffix + ":", "SECRETS_DIR=" + secrets,
		"DATABASE_URL=", "REDIS_URL=", "SMTP_HOST=", "DEV_SMTP_PORT=0", "LOG_LEVEL=warn", "HEALTH_INTERVAL=1s"},
		bin, "-db", dbName, "-state", dir, "-stack", "../../stack.yml")
	gw := "http://" + gwAddr
	testenv.Eventually(t, "the dev stack", 1200, func() error {
		resp, err := http.Get(gw + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})

	// Traffic that makes every panel's metrics exist.
	var ada, bob struct {
		User  struct{ ID int64 }
		Token string
	}
	call(t, "POST", gw+"/function/register", "", map[string]string{"email": "ada@prom.test", "password": "analytical", "name": "Ada"}, &ada)
	call(t, "POST", gw+"/function/register", "", map[string]string{"email": "bob@prom.test", "password": "analytical", "name": "Bob"}, &bob)
	var created struct{ Topic struct{ ID int64 } }
	call(t, "POST", gw+"/function/create-topic", ada.Token, map[string]string{"name": "metrics"}, &created)
	call(t, "POST", gw+"/function/subscribe", bob.Token, map[string]any{"topic_id": created.Topic.ID, "email": true}, nil)
	ws, _, err := websocket.DefaultDialer.Dial(fmt.Sprintf("ws://%s/socket/websocket?vsn=2.0.0&token=%s", gwAddr, bob.Token), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for i, topic := range []string{fmt.Sprintf("user:%d", bob.User.ID), fmt.Sprintf("topic:%d", created.Topic.ID)} {
		frame := fmt.Sprintf(`["%d","%d",%q,"phx_join",{}]`, i+1, i+1, topic)
		if err := ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			t.Fatal(err)
		}
		if _, reply, err := ws.ReadMessage(); err != nil || !strings.Contains(string(reply), `"ok"`) {
			t.Fatalf("join %s: %s %v", topic, reply, err)
		}
	}
	go func() { // keep reading, so the socket stays healthy
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for _, email := range []bool{false, true} {
		call(t, "POST", fmt.Sprintf("%s/api/topics/%d/notifications", gw, created.Topic.ID), ada.Token,
			map[string]any{"title": "scraped", "body": "by prometheus", "email": email}, nil)
	}
	call(t, "POST", gw+"/api/jobs/gen-avatar", ada.Token, map[string]any{"seed": "prometheus", "size": 32}, nil)

	// Prometheus with the project's configuration.
	cfg, err := os.ReadFile("prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("127.0.0.1:4000", gwAddr, "127.0.0.1:8080", fnAddr, "5s", "1s").Replace(string(cfg))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	promAddr := proc.FreeAddr()
	start(t, "prometheus", nil, prom, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promAddr)
	api := "http://" + promAddr + "/api/v1/"

	testenv.Eventually(t, "every target up", 1200, func() error {
		var out struct {
			Data struct {
				ActiveTargets []struct {
					ScrapeURL string `json:"scrapeUrl"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := getJSON(api+"targets", &out); err != nil {
			return err
		}
		if len(out.Data.ActiveTargets) != 2 {
			return fmt.Errorf("%d targets, want 2", len(out.Data.ActiveTargets))
		}
		for _, tg := range out.Data.ActiveTargets {
			if tg.Health != "up" {
				return fmt.Errorf("%s is %s: %s", tg.ScrapeURL, tg.Health, tg.LastError)
			}
		}
		return nil
	})

	panels, err := grafana.Panels("../grafana/dashboards/tidings.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range panels {
		for _, target := range p.Targets {
			testenv.Eventually(t, fmt.Sprintf("data for panel %q (%s)", p.Title, target.Expr), 600, func() error {
				var out struct {
					Status string `json:"status"`
					Error  string `json:"error"`
					Data   struct {
						Result []json.RawMessage `json:"result"`
					} `json:"data"`
				}
				if err := getJSON(api+"query?query="+url.QueryEscape(target.Expr), &out); err != nil {
					return err
				}
				if out.Status != "success" {
					return fmt.Errorf("query failed: %s", out.Error)
				}
				if len(out.Data.Result) == 0 {
					return fmt.Errorf("no data")
				}
				return nil
			})
		}
	}
}

func getJSON(target string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}
