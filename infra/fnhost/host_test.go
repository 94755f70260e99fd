package fnhost

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"tidings/functions"
	"tidings/lib/auth"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/logging"
	"tidings/lib/testenv"
)

// lockedBuffer collects logs written from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// devHost serves stack.yml's functions over real HTTP on the real
// PostgreSQL and Redis, as `make up` does.
func devHost(t *testing.T) (*httptest.Server, *testenv.DB, *lockedBuffer) {
	db := testenv.NewDB(t)
	rd := testenv.NewRedis(t)
	cfg := config.Config{JWTSecret: testenv.JWTKey, TokenTTL: time.Hour, RedisPrefix: rd.Prefix, MaxBodyBytes: 4096}
	deps := &functions.Deps{Config: cfg, DBs: db.DBs(), Redis: rd.Client, Tokens: auth.NewTokens(cfg.JWTSecret, cfg.TokenTTL)}
	fns, err := Load("../../stack.yml", deps)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	srv := httptest.NewServer(New(fns, cfg.MaxBodyBytes, logging.NewTo(logs, "debug", "fnhost")))
	t.Cleanup(srv.Close)
	return srv, db, logs
}

func call(t *testing.T, srv *httptest.Server, method, function, body, token string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+"/function/"+function, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, function, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s answered %d with non-JSON %q", method, function, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

func TestPublicFunctionsOverHTTPOnTheDevHost(t *testing.T) {
	srv, db, logs := devHost(t)
	const adaPassword, bobPassword = "ada-secret-password", "bob-secret-password"

	status, ada := call(t, srv, "POST", "register", `{"email":"ada@example.com","password":"`+adaPassword+`","name":"Ada"}`, "")
	if status != 201 {
		t.Fatalf("register ada: %d %v", status, ada)
	}
	if status, bob := call(t, srv, "POST", "register", `{"email":"bob@example.com","password":"`+bobPassword+`","name":"Bob"}`, ""); status != 201 {
		t.Fatalf("register bob: %d %v", status, bob)
	}
	status, login := call(t, srv, "POST", "login", `{"email":"BOB@example.com","password":"`+bobPassword+`"}`, "")
	if status != 200 || login["token"] == nil || login["expires_at"] == nil {
		t.Fatalf("login bob: %d %v", status, login)
	}
	adaToken, bobToken := ada["token"].(string), login["token"].(string)

	status, created := call(t, srv, "POST", "create-topic", `{"name":"releases"}`, adaToken)
	if status != 201 {
		t.Fatalf("create-topic: %d %v", status, created)
	}
	topicID := created["topic"].(map[string]any)["id"].(float64)
	if status, out := call(t, srv, "POST", "subscribe", `{"topic_id":1}`, bobToken); status != 200 || topicID != 1 {
		t.Fatalf("subscribe: %d %v (topic %v)", status, out, topicID)
	}
	status, listing := call(t, srv, "GET", "list-topics", "", bobToken)
	topics, _ := listing["topics"].([]any)
	if status != 200 || len(topics) != 1 {
		t.Fatalf("list-topics: %d %v", status, listing)
	}
	seen := topics[0].(map[string]any)
	if seen["subscribed"] != true || seen["subscribers"] != 1.0 || seen["owner_id"] != ada["user"].(map[string]any)["id"] {
		t.Errorf("bob sees %v, want subscribed, 1 subscriber, owned by ada", seen)
	}

	// Every refused request answers the contract's error and changes nothing.
	expired, _, _ := auth.NewTokens(testenv.JWTKey, -time.Hour).Issue(1)
	forged, _, _ := auth.NewTokens([]byte("not-the-key-not-the-key-not-the-k"), time.Hour).Issue(1)
	refused := []struct {
		name, method, function, body, token string
		status                              int
	}{
		{"wrong password", "POST", "login", `{"email":"ada@example.com","password":"wrong-password"}`, "", 401},
		{"duplicate email", "POST", "register", `{"email":"Ada@Example.com","password":"another-password","name":"Ada"}`, "", 409},
		{"forged token", "POST", "create-topic", `{"name":"x"}`, forged, 401},
		{"expired token", "POST", "subscribe", `{"topic_id":1}`, expired, 401},
		{"missing token", "GET", "list-topics", "", "", 401},
		{"malformed JSON", "POST", "create-topic", `{"name":`, adaToken, 400},
		{"body over the limit", "POST", "register", `{"email":"c@example.com","password":"` + strings.Repeat("p", 5000) + `","name":"C"}`, "", 413},
		{"missing topic", "POST", "subscribe", `{"topic_id":77}`, bobToken, 404},
		{"unknown function", "POST", "no-such-function", `{}`, "", 404},
	}
	for _, r := range refused {
		before := testenv.Snapshot(t, db.Pool)
		status, out := call(t, srv, r.method, r.function, r.body, r.token)
		e, _ := out["error"].(map[string]any)
		if status != r.status || e["code"] == nil || e["message"] == nil {
			t.Errorf("%s: %d %v, want %d with an error code and message", r.name, status, out, r.status)
		}
		if after := testenv.Snapshot(t, db.Pool); after != before {
			t.Errorf("%s changed the database:\nbefore %s\nafter %s", r.name, before, after)
		}
	}

	var hashes []string
	rows, _ := db.Pool.Query(t.Context(), `SELECT password_hash FROM users`)
	for rows.Next() {
		var h string
		_ = rows.Scan(&h)
		hashes = append(hashes, h)
	}
	rows.Close()
	for _, h := range hashes {
		if !strings.HasPrefix(h, "$argon2id$") {
			t.Errorf("stored password %q is not an argon2id hash", h)
		}
	}

	out := logs.String()
	if !strings.Contains(out, `"function":"login"`) {
		t.Fatalf("the host logged no calls; the check below would prove nothing:\n%s", out)
	}
	for _, secret := range []string{adaPassword, bobPassword, "another-password", adaToken, bobToken, string(testenv.JWTKey)} {
		if strings.Contains(out, secret) {
			t.Errorf("a password, token or secret appears in the logs: %q", secret)
		}
	}
}

// TestHostAppliesEachFunctionsLimits sends a burst at a function whose
// MaxInflight slots are all held, and calls a function that outlives its
// timeout: 429s and a 504, never a 500.
func TestHostAppliesEachFunctionsLimits(t *testing.T) {
	const slots, burst = 2, 12
	release := make(chan struct{})
	entered := make(chan struct{}, slots)
	held := fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
		entered <- struct{}{}
		<-release
		return fn.JSON(200, map[string]bool{"ok": true})
	})
	stuck := fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
		<-req.Context().Done()
		return fn.Response{}, req.Context().Err()
	})
	srv := httptest.NewServer(New(map[string]Function{
		"held":  {Handler: held, Limits: fn.Limits{MaxInflight: slots}},
		"stuck": {Handler: stuck, Limits: fn.Limits{Timeout: 20 * time.Millisecond}},
	}, 1024, logging.NewTo(io.Discard, "info", "test")))
	defer srv.Close()

	var wg sync.WaitGroup
	for i := 0; i < slots; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, out := call(t, srv, "POST", "held", "{}", ""); status != 200 {
				t.Errorf("call within the limit: %d %v", status, out)
			}
		}()
	}
	for i := 0; i < slots; i++ {
		<-entered
	}
	statuses := make(chan int, burst)
	var burstWG sync.WaitGroup
	for i := 0; i < burst; i++ {
		burstWG.Add(1)
		go func() {
			defer burstWG.Done()
			status, _ := call(t, srv, "POST", "held", "{}", "")
			statuses <- status
		}()
	}
	burstWG.Wait()
	close(statuses)
	for s := range statuses {
		if s != 429 {
			t.Errorf("call over the limit: %d, want 429", s)
		}
	}
	close(release)
	wg.Wait()

	if status, out := call(t, srv, "POST", "stuck", "{}", ""); status != 504 || out["error"] == nil {
		t.Errorf("function past its timeout: %d %v, want 504", status, out)
	}
}

// TestSlowBodiesHoldNoSlotAndAreCutAtTheBodyDeadline: as many connections
// as the function has slots each send a request whose body drips a byte at
// a time. A normal call made while they drip must get its answer, not 429
// (the slot is taken only once a body is read), and every dripper must be
// cut at the server's body deadline with 408 (or, if its answer cannot be
// read any more, a closed connection), never held.
func TestSlowBodiesHoldNoSlotAndAreCutAtTheBodyDeadline(t *testing.T) {
	const slots = 3
	const bodyTimeout = 500 * time.Millisecond
	quick := fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
		return fn.JSON(200, map[string]bool{"ok": true})
	})
	host := New(map[string]Function{
		"login": {Handler: quick, Limits: fn.Limits{MaxInflight: slots, Timeout: 5 * time.Second}},
	}, 4096, logging.NewTo(io.Discard, "info", "test"))
	// Marks each dripper's request as it enters the host, past the
	// server's header deadline and before anything reads its body.
	entered := make(chan struct{}, slots)
	marked := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Dripper") != "" {
			entered <- struct{}{}
		}
		host.ServeHTTP(w, r)
	})
	srv := httptest.NewUnstartedServer(marked)
	srv.Config = fn.NewServer(marked, config.HTTPServer{ReadBodyTimeout: bodyTimeout}, nil)
	srv.Start()
	t.Cleanup(srv.Close)

	drippers := testenv.Drip(t, srv.Listener.Addr().String(), "POST", "/function/login",
		http.Header{"X-Dripper": {"1"}}, slots, 50*time.Millisecond)
	for i := range slots {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d dripping requests reached the host", i, slots)
		}
	}
	if status, out := call(t, srv, "POST", "login", `{}`, ""); status != 200 {
		t.Errorf("a normal call while %d bodies drip: %d %v, want 200 (a dripping body must hold no slot)", slots, status, out)
	}
	drippers.ExpectCut(t, bodyTimeout)
}
