package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"tidings/gateway-ws/invoke"
	"time"

	"tidings/lib/testenv"
)

// startUpstream runs a stand-in FaaS gateway on loopback: login echoes the
// request, gen-avatar is slower than its timeout.
func startUpstream(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/function/login", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(body))
	})
	mux.HandleFunc("/function/gen-avatar", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestProxyPassesPublicFunctionsWithTheirTimeouts(t *testing.T) {
	cfg := testConfig(testenv.NewRedis(t), testenv.AdminURL())
	cfg.FaaSURL = startUpstream(t)
	cfg.Calls.PerFunction = map[string]invoke.Settings{"gen-avatar": {Timeout: 100 * time.Millisecond, MaxInflight: 4}}
	cfg.MaxBodyBytes = 1024
	g := startGateway(t, cfg)

	status, body := postJSON(t, g.httpURL("/function/login?x=1"), `{"email":"a"}`, nil)
	if status != http.StatusTeapot || body != `POST /function/login?x=1 {"email":"a"}` {
		t.Fatalf("login through the gateway: %d %q, want the upstream's 418 and echo", status, body)
	}
	cases := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"internal function", "POST", "/function/notify-prepare", `{}`, 404, `"code":"not_found"`},
		{"unknown function", "GET", "/function/nope", ``, 404, `"code":"not_found"`},
		{"slower than its timeout", "GET", "/function/gen-avatar?seed=a", ``, 504, `"code":"timeout"`},
		{"body too large", "POST", "/function/login", strings.Repeat("x", 2048), 413, `"code":"too_large"`},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, g.httpURL(tc.path), strings.NewReader(tc.body))
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.code) {
			t.Errorf("%s: %d %s, want %d with %s", tc.name, resp.StatusCode, b, tc.status, tc.code)
		}
	}
}

func TestProxyAnswers502WhenTheFaaSGatewayIsDown(t *testing.T) {
	cfg := testConfig(testenv.NewRedis(t), testenv.AdminURL())
	cfg.FaaSURL = "http://127.0.0.1:1"
	g := startGateway(t, cfg)
	status, body := postJSON(t, g.httpURL("/function/login"), `{}`, nil)
	if status != http.StatusBadGateway || !strings.Contains(body, `"code":"bad_gateway"`) {
		t.Fatalf("FaaS gateway down: %d %s, want 502 bad_gateway", status, body)
	}
}

// TestSlowBodiesHoldNoSlotAndAreCutAtTheBodyDeadline, through the
// pass-through: more connections than login's call slots drip their
// bodies at gateway-ws. A normal login meanwhile reaches the function
// (the upstream's 418 echo, not 429), and every dripper is cut at the
// gateway's body deadline with 408 instead of being held open.
func TestSlowBodiesHoldNoSlotAndAreCutAtTheBodyDeadline(t *testing.T) {
	const slots, drippers = 2, 6
	cfg := testConfig(testenv.NewRedis(t), testenv.AdminURL())
	cfg.FaaSURL = startUpstream(t)
	cfg.Calls.PerFunction = map[string]invoke.Settings{"login": {Timeout: 5 * time.Second, MaxInflight: slots}}
	cfg.HTTP.ReadBodyTimeout = 500 * time.Millisecond
	g := startGateway(t, cfg)

	dripping := testenv.Drip(t, g.addr, "POST", "/function/login", nil, drippers, 50*time.Millisecond)
	status, body := postJSON(t, g.httpURL("/function/login"), `{"email":"a"}`, nil)
	if status != http.StatusTeapot {
		t.Errorf("login while %d bodies drip: %d %s, want the upstream's 418", drippers, status, body)
	}
	dripping.ExpectCut(t, cfg.HTTP.ReadBodyTimeout)
}
