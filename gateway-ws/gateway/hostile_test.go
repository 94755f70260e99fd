package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"tidings/functions"
	"tidings/infra/fnhost"
	"tidings/lib/auth"
	"tidings/lib/catalog"
	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/logging"
	"tidings/lib/testenv"
)

// hostileEnv is the whole system on loopback: every function on the
// function host (infra/fnhost) as stack.yml declares it, and a gateway
// passing the public ones through, over one test database and Redis prefix.
type hostileEnv struct {
	t       *testing.T
	db      *testenv.DB
	rd      *testenv.Redis
	host    *httptest.Server
	gw      *testGateway
	owner   int64 // owns topic
	topic   int64
	ownerTk string
}

func startHostileEnv(t *testing.T) *hostileEnv {
	t.Helper()
	db := testenv.NewDB(t)
	rd := testenv.NewRedis(t)
	limits := config.DefaultLimits()
	deps := &functions.Deps{
		Config: config.Config{RedisPrefix: rd.Prefix, InternalKey: testInternalKey, JWTSecret: testSecret, Limits: limits, MaxBodyBytes: 64 << 10},
		DB:     db.Pool, Redis: rd.Client, Tokens: auth.NewTokens(testSecret, time.Hour),
	}
	fns, err := fnhost.Load("../../stack.yml", deps)
	if err != nil {
		t.Fatal(err)
	}
	host := httptest.NewUnstartedServer(fnhost.New(fns, 64<<10, logging.NewTo(io.Discard, "error", "test")))
	host.Listener = fn.JSONErrorListener(host.Listener)
	host.Config.MaxHeaderBytes = 16 << 10
	host.Start()
	t.Cleanup(host.Close)
	cfg := testConfig(rd, db.URL)
	cfg.FaaSURL = host.URL
	cfg.Calls.FaaSURL = host.URL
	e := &hostileEnv{t: t, db: db, rd: rd, host: host, gw: startGateway(t, cfg)}
	e.topic, e.owner, _ = seedTopic(t, db, 1)
	e.ownerTk = token(t, e.owner)
	return e
}

// snapshot is every row of the database and every Redis key of the test's
// prefix.
func (e *hostileEnv) snapshot() string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := e.rd.Client.Keys(ctx, e.rd.Prefix+"*").Result()
	if err != nil {
		e.t.Fatalf("redis keys: %v", err)
	}
	sort.Strings(keys)
	return testenv.Snapshot(e.t, e.db.Pool) + "== redis\n" + strings.Join(keys, "\n")
}

// hostileCase is one request a hostile client makes.
type hostileCase struct {
	name   string
	base   string // "fnhost" or "gateway"
	method string
	path   string // with the query string
	header http.Header
	body   string
	raw    string // when set, written as is instead
	// status, when set, is the one status expected instead of any 4xx:
	// net/http answers an unknown transfer coding 501, as RFC 9112 asks.
	status int
}

type answer struct {
	status      int
	contentType string
	body        []byte
}

func (e *hostileEnv) addr(base string) string {
	if base == "fnhost" {
		return strings.TrimPrefix(e.host.URL, "http://")
	}
	return e.gw.addr
}

func (e *hostileEnv) do(c hostileCase) answer {
	e.t.Helper()
	if c.raw != "" {
		return rawRequest(e.t, e.addr(c.base), c.raw)
	}
	req, err := http.NewRequest(c.method, "http://"+e.addr(c.base)+c.path, strings.NewReader(c.body))
	if err != nil {
		e.t.Fatalf("%s: %v", c.name, err)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		e.t.Fatalf("%s: %s %s: %v", c.name, c.method, c.path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), body}
}

// rawRequest writes request on a fresh connection and reads one answer.
func rawRequest(t *testing.T, addr, request string) answer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() { _, _ = io.WriteString(c, request) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer to a raw request: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), body}
}

// errorShape returns the answer's error code when it is a 4xx in the JSON
// error shape, or why it is not.
func errorShape(a answer, want int) (string, bool) {
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if want != 0 && a.status != want {
		return fmt.Sprintf("status %d, want %d", a.status, want), false
	}
	if want == 0 && (a.status < 400 || a.status > 499) {
		return fmt.Sprintf("status %d is not a 4xx", a.status), false
	}
	if !strings.HasPrefix(a.contentType, "application/json") {
		return fmt.Sprintf("Content-Type %q", a.contentType), false
	}
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == nil || e.Error.Code == "" || e.Error.Message == "" {
		return "body is not {\"error\":{\"code\",\"message\"}}", false
	}
	return e.Error.Code, true
}

// fnSpec is what a hostile client can get wrong about one public function.
type fnSpec struct {
	method  string
	auth    bool
	valid   map[string]any // a valid body (POST) or query (GET)
	strings []string       // its text fields
	ints    []string       // its integer fields
}

func publicSpecs(topicID int64) map[string]fnSpec {
	return map[string]fnSpec{
		"register":           {method: "POST", valid: map[string]any{"email": "new@example.test", "password": "long enough", "name": "N"}, strings: []string{"email", "password", "name"}},
		"login":              {method: "POST", valid: map[string]any{"email": "new@example.test", "password": "long enough"}, strings: []string{"email", "password"}},
		"create-topic":       {method: "POST", auth: true, valid: map[string]any{"name": "t", "description": "d"}, strings: []string{"name", "description"}},
		"subscribe":          {method: "POST", auth: true, valid: map[string]any{"topic_id": topicID}, ints: []string{"topic_id"}},
		"unsubscribe":        {method: "POST", auth: true, valid: map[string]any{"topic_id": topicID}, ints: []string{"topic_id"}},
		"ack-notification":   {method: "POST", auth: true, valid: map[string]any{"notification_id": 1}, ints: []string{"notification_id"}},
		"list-topics":        {method: "GET", auth: true},
		"get-counter":        {method: "GET", auth: true},
		"list-notifications": {method: "GET", auth: true, valid: map[string]any{"limit": 5}, ints: []string{"limit", "before"}},
		"gen-avatar":         {method: "GET", valid: map[string]any{"seed": "s", "size": 64}, strings: []string{"seed"}, ints: []string{"size"}},
	}
}

// withField is body with field set to the raw JSON value.
func withField(valid map[string]any, field, rawValue string) string {
	parts := []string{}
	keys := make([]string, 0, len(valid))
	for k := range valid {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := rawValue
		if k != field {
			b, _ := json.Marshal(valid[k])
			v = string(b)
		}
		parts = append(parts, fmt.Sprintf("%q:%s", k, v))
	}
	if _, ok := valid[field]; !ok {
		parts = append(parts, fmt.Sprintf("%q:%s", field, rawValue))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// withQuery is the valid query with param set to the already escaped value.
func withQuery(valid map[string]any, param, escaped string) string {
	q := url.Values{}
	for k, v := range valid {
		if k != param {
			q.Set(k, fmt.Sprint(v))
		}
	}
	s := q.Encode()
	if s != "" {
		s += "&"
	}
	return s + param + "=" + escaped
}

func (e *hostileEnv) functionCases(goneTk string) []hostileCase {
	specs := publicSpecs(e.topic)
	var names []string
	for name := range specs {
		names = append(names, name)
	}
	sort.Strings(names)
	if public := catalog.Public(); strings.Join(public, ",") != strings.Join(names, ",") {
		e.t.Fatalf("the test covers %v; the public functions are %v", names, public)
	}
	var cases []hostileCase
	for _, name := range names {
		spec := specs[name]
		header := http.Header{"Content-Type": {"application/json"}}
		if spec.auth {
			header.Set("Authorization", "Bearer "+e.ownerTk)
		}
		add := func(what, method, query, body string, h http.Header) {
			path := "/function/" + name
			if query != "" {
				path += "?" + query
			}
			for _, base := range []string{"fnhost", "gateway"} {
				cases = append(cases, hostileCase{name: name + ": " + what, base: base, method: method, path: path, header: h, body: body})
			}
		}
		wrong := map[string]string{"GET": "POST", "POST": "GET"}[spec.method]
		add("wrong method "+wrong, wrong, "", "", header)
		add("method DELETE", "DELETE", "", "", header)
		if spec.auth {
			add("no token", spec.method, "", "{}", http.Header{})
			add("forged token", spec.method, "", "{}", http.Header{"Authorization": {"Bearer " + e.ownerTk + "x"}})
			add("token of a deleted user", spec.method, "", mustJSON(spec.valid), http.Header{"Authorization": {"Bearer " + goneTk}})
		}
		if spec.method == "POST" {
			valid := mustJSON(spec.valid)
			add("malformed JSON", "POST", "", `{"`, header)
			add("not an object", "POST", "", `[]`, header)
			add("null", "POST", "", `null`, header)
			add("empty body", "POST", "", ``, header)
			add("trailing data", "POST", "", valid+` junk`, header)
			add("two objects", "POST", "", valid+valid, header)
			add("unknown field", "POST", "", withField(spec.valid, "nope", "1"), header)
			add("oversized body", "POST", "", withField(spec.valid, "pad", `"`+strings.Repeat("a", 70<<10)+`"`), header)
			for _, f := range spec.strings {
				add(f+" with NUL", "POST", "", withField(spec.valid, f, `"a\u0000b"`), header)
				add(f+" invalid UTF-8", "POST", "", withField(spec.valid, f, "\"a\xff\xfeb\""), header)
				add(f+" wrong type", "POST", "", withField(spec.valid, f, `123`), header)
			}
			for _, f := range spec.ints {
				add(f+" overflowing", "POST", "", withField(spec.valid, f, `99999999999999999999`), header)
				add(f+" exponent", "POST", "", withField(spec.valid, f, `1e3`), header)
				add(f+" fraction", "POST", "", withField(spec.valid, f, `1.5`), header)
				add(f+" wrong type", "POST", "", withField(spec.valid, f, `"1"`), header)
			}
			continue
		}
		if len(spec.strings)+len(spec.ints) > 0 {
			add("malformed query", "GET", withQuery(spec.valid, "x", "%zz"), "", header)
		}
		for _, f := range spec.strings {
			add(f+" with NUL", "GET", withQuery(spec.valid, f, "a%00b"), "", header)
			add(f+" invalid UTF-8", "GET", withQuery(spec.valid, f, "a%ff%feb"), "", header)
		}
		for _, f := range spec.ints {
			for _, v := range []string{"99999999999999999999", "%2B1", "01", "1e3", "1.5", "x", "0"} {
				add(f+"="+v, "GET", withQuery(spec.valid, f, v), "", header)
			}
		}
	}
	return cases
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func (e *hostileEnv) gatewayCases() []hostileCase {
	owner := http.Header{"Authorization": {"Bearer " + e.ownerTk}, "Content-Type": {"application/json"}}
	stranger := http.Header{"Authorization": {"Bearer " + token(e.t, e.owner+1000)}, "Content-Type": {"application/json"}}
	internal := http.Header{"X-Internal-Key": {testInternalKey}}
	internal.Set(auth.InternalKeyHeader, testInternalKey)
	publish := fmt.Sprintf("/api/topics/%d/notifications", e.topic)
	var cases []hostileCase
	add := func(name, method, path, body string, h http.Header) {
		cases = append(cases, hostileCase{name: name, base: "gateway", method: method, path: path, header: h, body: body})
	}
	for _, id := range []string{"+1", "01", "1e3", "0", "-1", "99999999999999999999", "abc", "%20" + fmt.Sprint(e.topic)} {
		add("publish to topic id "+id, "POST", "/api/topics/"+id+"/notifications", `{"title":"t"}`, owner)
	}
	for what, body := range map[string]string{
		"malformed JSON":      `{"title":`,
		"trailing data":       `{"title":"a"} junk`,
		"two objects":         `{"title":"a"}{"title":"b"}`,
		"title with NUL":      `{"title":"x\u0000"}`,
		"body with NUL":       `{"title":"x","body":"\u0000"}`,
		"title invalid UTF-8": "{\"title\":\"\xff\"}",
		"body invalid UTF-8":  "{\"title\":\"x\",\"body\":\"\xc3\x28\"}",
		"title wrong type":    `{"title":1}`,
		"email wrong type":    `{"title":"x","email":"yes"}`,
		"unknown field":       `{"title":"x","nope":1}`,
		"blank title":         `{"title":"   "}`,
		"title too long":      `{"title":"` + strings.Repeat("t", 201) + `"}`,
		"not an object":       `["title"]`,
		"oversized body":      `{"title":"x","body":"` + strings.Repeat("b", 70<<10) + `"}`,
	} {
		add("publish: "+what, "POST", publish, body, owner)
	}
	add("publish: no token", "POST", publish, `{"title":"x"}`, http.Header{})
	add("publish: not the owner", "POST", publish, `{"title":"x"}`, stranger)
	add("publish: wrong method", "GET", publish, ``, owner)
	add("jobs: malformed payload", "POST", "/api/jobs/gen-avatar", `{"seed":`, owner)
	add("jobs: NUL in payload", "POST", "/api/jobs/gen-avatar", `{"seed":"\u0000"}`, owner)
	add("jobs: invalid UTF-8 payload", "POST", "/api/jobs/gen-avatar", "{\"seed\":\"\xff\"}", owner)
	add("jobs: trailing data", "POST", "/api/jobs/gen-avatar", `{"seed":"a"} junk`, owner)
	add("jobs: not an object", "POST", "/api/jobs/gen-avatar", `[1]`, owner)
	add("jobs: no token", "POST", "/api/jobs/gen-avatar", `{"seed":"a"}`, http.Header{})
	add("jobs: internal function", "POST", "/api/jobs/notify-prepare", `{}`, owner)
	add("jobs: unknown job", "GET", "/api/jobs/nope", ``, owner)
	add("jobs: wrong method", "PUT", "/api/jobs/gen-avatar", `{}`, owner)
	add("broadcast: no key", "POST", "/internal/broadcast", `{"topic":"user:1","event":"x","payload":{}}`, http.Header{})
	add("broadcast: NUL", "POST", "/internal/broadcast", `{"topic":"user:1","event":"x\u0000","payload":{}}`, internal)
	add("broadcast: trailing data", "POST", "/internal/broadcast", `{"topic":"user:1","event":"x","payload":{}} x`, internal)
	add("broadcast: topic user:01", "POST", "/internal/broadcast", `{"topic":"user:01","event":"x","payload":{}}`, internal)
	add("socket: wrong method", "POST", "/socket/websocket?vsn=2.0.0&token="+e.ownerTk, ``, http.Header{})
	add("socket: no token", "GET", "/socket/websocket?vsn=2.0.0", ``, http.Header{})
	add("socket: not an upgrade", "GET", "/socket/websocket?vsn=2.0.0&token="+e.ownerTk, ``, http.Header{})
	add("socket: bad upgrade version", "GET", "/socket/websocket?vsn=2.0.0&token="+e.ownerTk, ``, http.Header{
		"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"7"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}})
	add("unknown path", "GET", "/nope", ``, http.Header{})
	add("unknown function", "POST", "/function/nope", `{}`, http.Header{})
	add("internal function passed through", "POST", "/function/notify-prepare", `{}`, internal)
	add("healthz wrong method", "POST", "/healthz", ``, http.Header{})
	add("metrics wrong method", "DELETE", "/metrics", ``, http.Header{})
	add("status wrong method", "POST", "/api/status", ``, http.Header{})
	for _, base := range []string{"gateway", "fnhost"} {
		cases = append(cases,
			hostileCase{name: "oversized headers", base: base, raw: "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("h", 1100<<10) + "\r\n\r\n"},
			hostileCase{name: "malformed request line", base: base, raw: "GARBAGE\r\n\r\n"},
			hostileCase{name: "unknown transfer encoding", base: base, raw: "POST /function/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: zip\r\n\r\n", status: http.StatusNotImplemented},
		)
	}
	cases = append(cases,
		hostileCase{name: "fnhost: unknown path", base: "fnhost", method: "GET", path: "/nope"},
		hostileCase{name: "fnhost: unknown function", base: "fnhost", method: "POST", path: "/function/nope", body: "{}"},
		hostileCase{name: "fnhost: healthz wrong method", base: "fnhost", method: "POST", path: "/healthz"},
		hostileCase{name: "fnhost: unknown function status", base: "fnhost", method: "GET", path: "/system/function/nope"},
		hostileCase{name: "fnhost: internal function without the key", base: "fnhost", method: "POST", path: "/function/notify-prepare", body: "{}"},
	)
	return cases
}

// TestHostileInputGetsA4xxInTheErrorShapeAndChangesNothing sends every
// public function (on the function host and through gateway-ws) and every
// gateway-ws endpoint the mistakes a hostile client makes. Each answer must
// be a 4xx in the JSON error shape, and the database and Redis keys must be
// what they were before it.
func TestHostileInputGetsA4xxInTheErrorShapeAndChangesNothing(t *testing.T) {
	e := startHostileEnv(t)
	gone, _ := testenv.User(t, e.db.Pool, "gone@example.test")
	goneTk := token(t, gone)
	if _, err := e.db.Pool.Exec(context.Background(), `DELETE FROM users WHERE id = $1`, gone); err != nil {
		t.Fatal(err)
	}
	// Warm what a valid call fills (cache entries) so that only a change
	// made by a refused request shows.
	if status, body := postJSON(t, e.gw.httpURL(fmt.Sprintf("/api/topics/%d/notifications", e.topic)), `{"title":"warm-up"}`,
		http.Header{"Authorization": {"Bearer " + e.ownerTk}}); status != http.StatusCreated {
		t.Fatalf("warm-up publish: %d %s", status, body)
	}
	// A join of a non-canonical topic id is refused with its reason. (The
	// socket also warms the cache entry of its user.)
	cl := dial(t, e.gw, e.owner)
	for _, topic := range []string{"topic:01", "topic:+1", fmt.Sprintf("topic:%d ", e.topic), "user:1e3"} {
		got := cl.join(topic)
		if !strings.Contains(got, `"status":"error"`) || !strings.Contains(got, `"reason":"invalid topic"`) {
			t.Errorf("join %q: %s, want an error reply with reason \"invalid topic\"", topic, got)
		}
	}
	cases := append(e.functionCases(goneTk), e.gatewayCases()...)
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-8s | %-55s | %s\n", "via", "case", "answer")
	for _, c := range cases {
		before := e.snapshot()
		a := e.do(c)
		code, ok := errorShape(a, c.status)
		after := e.snapshot()
		fmt.Fprintf(&table, "%-8s | %-55.55s | %d %s\n", c.base, c.name, a.status, code)
		if !ok {
			t.Errorf("%s via %s: %s (answer %d %.200s)", c.name, c.base, code, a.status, a.body)
		}
		if before != after {
			t.Errorf("%s via %s: the request changed the database or Redis:\nbefore:\n%s\nafter:\n%s", c.name, c.base, before, after)
		}
	}
	t.Logf("%d hostile requests:%s", len(cases), table.String())

}

// TestClientRefusalsNeverOpenTheBreakerButAFailingParticipantDoes sends 20
// client mistakes in a row to login and to publish through gateway-ws (its
// breaker opens after 5 failures): a valid login and publish by another
// user must succeed at once. Then the fault: the function host stops, and
// the participants' breaker must open.
func TestClientRefusalsNeverOpenTheBreakerButAFailingParticipantDoes(t *testing.T) {
	e := startHostileEnv(t)
	status, body := postJSON(t, e.gw.httpURL("/function/register"), `{"email":"victim@example.test","password":"victim password","name":"V"}`, nil)
	if status != http.StatusCreated {
		t.Fatalf("register the victim: %d %s", status, body)
	}
	var reg struct {
		User  struct{ ID int64 } `json:"user"`
		Token string             `json:"token"`
	}
	if err := json.Unmarshal([]byte(body), &reg); err != nil {
		t.Fatal(err)
	}
	status, body = postJSON(t, e.gw.httpURL("/function/create-topic"), `{"name":"victim's"}`, http.Header{"Authorization": {"Bearer " + reg.Token}})
	if status != http.StatusCreated {
		t.Fatalf("victim's topic: %d %s", status, body)
	}
	var created struct {
		Topic struct{ ID int64 } `json:"topic"`
	}
	_ = json.Unmarshal([]byte(body), &created)

	probes := []string{`{"email":"x\u0000@probe.test","password":"whatever"}`, "{\"email\":\"\xff@probe.test\",\"password\":\"p\"}",
		`{"email":"a@probe.test","password":"p"} junk`, `{"email":1}`}
	for i := range 20 {
		if status, body := postJSON(t, e.gw.httpURL("/function/login"), probes[i%len(probes)], nil); status != http.StatusBadRequest {
			t.Fatalf("hostile login #%d: %d %s, want 400", i+1, status, body)
		}
	}
	if status, body := postJSON(t, e.gw.httpURL("/function/login"), `{"email":"victim@example.test","password":"victim password"}`, nil); status != http.StatusOK {
		t.Errorf("the victim's login after 20 hostile ones: %d %s, want 200 (login's breaker must stay closed)", status, body)
	}

	hostile := http.Header{"Authorization": {"Bearer " + e.ownerTk}}
	titles := []string{`{"title":"x\u0000"}`, "{\"title\":\"\xff\"}", `{"title":"a"} junk`, `{"title":"a","body":"\u0000"}`}
	for i := range 20 {
		url := e.gw.httpURL(fmt.Sprintf("/api/topics/%d/notifications", e.topic))
		if status, body := postJSON(t, url, titles[i%len(titles)], hostile); status != http.StatusBadRequest {
			t.Fatalf("hostile publish #%d: %d %s, want 400", i+1, status, body)
		}
	}
	victimPublish := func() (int, string) {
		return postJSON(t, e.gw.httpURL(fmt.Sprintf("/api/topics/%d/notifications", created.Topic.ID)), `{"title":"still here"}`,
			http.Header{"Authorization": {"Bearer " + reg.Token}})
	}
	if status, body := victimPublish(); status != http.StatusCreated {
		t.Errorf("the victim's publish after 20 hostile ones: %d %s, want 201 (the participants' breakers must stay closed)", status, body)
	}
	for _, s := range e.gw.srv.calls.Statuses() {
		if s.Breaker != "closed" {
			t.Errorf("after client mistakes only, %s's breaker is %s", s.Name, s.Breaker)
		}
	}

	// The fault: the function host goes away; its connections are refused.
	e.host.Close()
	for range 6 {
		if status, body := victimPublish(); status < 500 {
			t.Fatalf("publish with the function host gone: %d %s, want a 5xx", status, body)
		}
	}
	open := map[string]bool{}
	for _, s := range e.gw.srv.calls.Statuses() {
		open[s.Name] = s.Breaker == "open"
	}
	if !open["notify-prepare"] || !open["counter-prepare"] {
		t.Errorf("after 6 publishes with the participants unreachable, breakers: %+v; want notify-prepare and counter-prepare open", e.gw.srv.calls.Statuses())
	}
}
