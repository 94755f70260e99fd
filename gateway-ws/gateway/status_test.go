package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tidings/gateway-ws/cluster"
	"tidings/gateway-ws/invoke"
	"tidings/lib/testenv"
)

// getJSON fetches url and decodes its JSON answer into v (when 200).
func getJSON(t *testing.T, url string, v any) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK && v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: decode %s: %v", url, body, err)
		}
	}
	return resp.StatusCode, string(body)
}

func nodeIDs(nodes []cluster.Node) []string {
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.ID)
	}
	return ids
}

func fastNodes(cfg Config, id string) Config {
	cfg.Cluster = cluster.Settings{ID: id, Heartbeat: 100 * time.Millisecond, TTL: 5 * time.Second}
	return cfg
}

// Two replicas on one Redis prefix list each other with their addresses
// and socket counts, and each function's health as the answering replica
// sees it: login answered (breaker closed), gen-avatar timed out once with
// a one-failure breaker (open). A replica that stops leaves the list at
// once.
func TestClusterListsLiveReplicasAndFunctionHealth(t *testing.T) {
	rds := testenv.NewRedis(t)
	cfg := testConfig(rds, testenv.AdminURL())
	cfg.FaaSURL = startUpstream(t)
	cfg.Calls.PerFunction = map[string]invoke.Settings{
		"gen-avatar": {Timeout: 100 * time.Millisecond, MaxInflight: 4, BreakerFailures: 1, BreakerOpenFor: time.Minute},
	}
	a := startGateway(t, fastNodes(cfg, "gw-a"))
	b := startGateway(t, fastNodes(cfg, "gw-b"))
	sock := dial(t, b, 7)
	sock.mustJoin("user:7")

	postJSON(t, a.httpURL("/function/login"), `{}`, nil)
	if resp, err := http.Get(a.httpURL("/function/gen-avatar?seed=x")); err == nil {
		resp.Body.Close()
	}

	var got clusterAnswer
	testenv.Eventually(t, "both replicas listed, gw-b with its socket", 200, func() bool {
		got = clusterAnswer{}
		status, _ := getJSON(t, a.httpURL("/api/cluster"), &got)
		return status == http.StatusOK && slices.Equal(nodeIDs(got.Nodes), []string{"gw-a", "gw-b"}) &&
			got.Nodes[1].Connections == 1 && got.Nodes[1].Topics == 1
	})
	if got.Self != "gw-a" {
		t.Errorf("self is %q, want gw-a", got.Self)
	}
	for i, g := range []*testGateway{a, b} {
		if got.Nodes[i].Addr != g.addr || got.Nodes[i].Version == "" || got.Nodes[i].StartedAt.IsZero() {
			t.Errorf("node %d: %+v, want addr %s, a version and a start time", i, got.Nodes[i], g.addr)
		}
	}
	health := map[string]invoke.Status{}
	for _, f := range got.Functions {
		health[f.Name] = f
	}
	if f := health["login"]; !f.Up || f.Breaker != "closed" {
		t.Errorf("login: %+v, want up with its breaker closed", f)
	}
	if f := health["gen-avatar"]; f.Breaker != "open" {
		t.Errorf("gen-avatar: %+v, want its breaker open after a timeout", f)
	}

	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	got = clusterAnswer{}
	if status, body := getJSON(t, a.httpURL("/api/cluster"), &got); status != http.StatusOK || !slices.Equal(nodeIDs(got.Nodes), []string{"gw-a"}) {
		t.Fatalf("right after gw-b stopped: %d %s, want only gw-a (its TTL is 5s: it must have deregistered)", status, body)
	}
}

// The status answer carries this replica, the nodes, the coordinator's
// counters with the unfinished records, and the job queue when there is
// one (and says so when there is none).
func TestStatusReportsTransactionsAndJobs(t *testing.T) {
	rds := testenv.NewRedis(t)
	cfg := fastNodes(testConfig(rds, testenv.AdminURL()), "gw-status")
	ctx := context.Background()
	// Counters as the coordinator keeps them, and one unfinished record in
	// the open set of its first bucket (recovery leaves it alone: it is
	// younger than RECOVERY_STUCK_AFTER).
	rds.Client.HSet(ctx, rds.Prefix+"tx:stats", "published", 5, "committed", 3, "aborted", 1, "recovered", 1)
	rds.Client.ZAdd(ctx, rds.Prefix+"tx:{b0}:open", redis.Z{Score: float64(time.Now().UnixMilli()), Member: "tx-unfinished"})

	g := startGateway(t, cfg)
	var st statusAnswer
	testenv.Eventually(t, "the replica listed in the status", 200, func() bool {
		st = statusAnswer{}
		status, _ := getJSON(t, g.httpURL("/api/status"), &st)
		return status == http.StatusOK && slices.Equal(nodeIDs(st.Nodes), []string{"gw-status"})
	})
	if st.Self.ID != "gw-status" || st.Errors != nil {
		t.Errorf("self %q, errors %v; want gw-status and none", st.Self.ID, st.Errors)
	}
	want := Transactions{Open: 1}
	want.Published, want.Committed, want.Aborted, want.Recovered = 5, 3, 1, 1
	if st.Transactions == nil || *st.Transactions != want {
		t.Errorf("transactions %+v, want %+v", st.Transactions, want)
	}
	if jobsSeen, _ := st.Jobs.(map[string]any); !st.JobsEnabled || jobsSeen == nil || jobsSeen["delayed"] != 0.0 {
		t.Errorf("the gateway's own queue: jobs_configured %v, jobs %v; want true and its (empty) stats", st.JobsEnabled, st.Jobs)
	}

	// Without a queue the panel says so; with one (here a stand-in that
	// answers like one) its stats are passed through; a failing one is an
	// error of its own.
	srv, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.closeDeps)
	srv.jobStats = nil
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/status", nil))
	if body := rec.Body.String(); rec.Code != http.StatusOK || !strings.Contains(body, `"jobs":null`) || !strings.Contains(body, `"jobs_configured":false`) {
		t.Errorf("without a queue: %d %s, want jobs null and jobs_configured false", rec.Code, body)
	}
	srv.jobStats = func(context.Context) (any, error) { return map[string]int{"delayed": 2}, nil }
	rec = httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/status", nil))
	var withJobs struct {
		Jobs        map[string]int `json:"jobs"`
		JobsEnabled bool           `json:"jobs_configured"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &withJobs); err != nil || !withJobs.JobsEnabled || withJobs.Jobs["delayed"] != 2 {
		t.Errorf("with a queue: %s (err %v), want jobs_configured and the queue's stats", rec.Body.String(), err)
	}
	srv.jobStats = func(context.Context) (any, error) { return nil, errors.New("LOADING") }
	rec = httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/status", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"jobs":"Redis is not answering"`) {
		t.Errorf("with a failing queue: %d %s, want 200 with the jobs error", rec.Code, rec.Body.String())
	}
}

// Fault: the gateway's Redis is killed (SIGKILL) while it runs, then
// started again, empty, on the same port. While it is down /api/cluster
// answers 503 with a JSON error, /api/status still answers with what this
// replica knows and says what is missing, and nothing crashes; once Redis
// is back the replica re-registers by itself.
func TestClusterAnswers503WhileRedisIsDownAndRecovers(t *testing.T) {
	r := testenv.StartRedisServer(t)
	cfg := fastNodes(testConfig(testenv.NewRedis(t), testenv.AdminURL()), "gw-outage")
	cfg.RedisURL = "redis://" + r.Addr() + "/0?dial_timeout=200ms&max_retries=-1"
	g := startGateway(t, cfg)
	testenv.Eventually(t, "the replica registered", 200, func() bool {
		var got clusterAnswer
		status, _ := getJSON(t, g.httpURL("/api/cluster"), &got)
		return status == http.StatusOK && slices.Equal(nodeIDs(got.Nodes), []string{"gw-outage"})
	})

	r.Stop()
	status, body := getJSON(t, g.httpURL("/api/cluster"), nil)
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"unavailable"`) || !strings.Contains(body, "Redis") {
		t.Errorf("/api/cluster with Redis down: %d %s, want 503 unavailable naming Redis", status, body)
	}
	var st statusAnswer
	if status, body := getJSON(t, g.httpURL("/api/status"), &st); status != http.StatusOK || st.Errors["nodes"] == "" ||
		st.Errors["transactions"] == "" || st.Transactions != nil || st.Self.ID != "gw-outage" {
		t.Errorf("/api/status with Redis down: %d %s, want 200 with this replica and errors for nodes and transactions", status, body)
	}

	r.Start()
	testenv.Eventually(t, "the replica re-registered after Redis returned", 200, func() bool {
		var got clusterAnswer
		status, _ := getJSON(t, g.httpURL("/api/cluster"), &got)
		return status == http.StatusOK && slices.Equal(nodeIDs(got.Nodes), []string{"gw-outage"})
	})
}

func TestAdvertisedAddressNamesTheHostForAnUnspecifiedIP(t *testing.T) {
	if got := advertised(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}); got != "127.0.0.1:4000" {
		t.Errorf("loopback: %q", got)
	}
	got := advertised(&net.TCPAddr{IP: net.IPv6unspecified, Port: 4000})
	if strings.HasPrefix(got, "[::]") || !strings.HasSuffix(got, ":4000") {
		t.Errorf("unspecified: %q, want host:4000", got)
	}
}
