package config

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestSecretsComeFromFilesThenTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, JWTSecret), []byte("from-the-file-from-the-file-0123456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SECRETS_DIR", dir)
	t.Setenv("JWT_SECRET", "from-the-environment-0123456789abcdef")
	t.Setenv("INTERNAL_KEY", "internal-from-env")
	t.Setenv("TOKEN_TTL", "90m")
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if string(c.JWTSecret) != "from-the-file-from-the-file-0123456" {
		t.Errorf("JWT secret %q: the file must win and be trimmed", c.JWTSecret)
	}
	if c.InternalKey != "internal-from-env" {
		t.Errorf("internal key %q: want the environment fallback", c.InternalKey)
	}
	if c.TokenTTL != 90*time.Minute {
		t.Errorf("TOKEN_TTL = %v, want 90m", c.TokenTTL)
	}
}

func TestLoadRefusesMissingOrWeakSecretsAndBadNumbers(t *testing.T) {
	t.Setenv("SECRETS_DIR", t.TempDir())
	t.Setenv("INTERNAL_KEY", "k")
	for name, env := range map[string]map[string]string{
		"no JWT secret":   {"JWT_SECRET": ""},
		"short secret":    {"JWT_SECRET": "short"},
		"bad TTL":         {"JWT_SECRET": "0123456789abcdef0123456789abcdef", "TOKEN_TTL": "soon"},
		"bad body limit":  {"JWT_SECRET": "0123456789abcdef0123456789abcdef", "MAX_BODY_BYTES": "big"},
		"no internal key": {"JWT_SECRET": "0123456789abcdef0123456789abcdef", "INTERNAL_KEY": ""},
		"brace in prefix": {"JWT_SECRET": "0123456789abcdef0123456789abcdef", "REDIS_PREFIX": "app{1}:"},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range env {
				t.Setenv(k, v)
			}
			if _, err := Load(); err == nil {
				t.Error("Load succeeded")
			}
		})
	}
}

func TestParseDurationTakesBothWatchdogForms(t *testing.T) {
	for in, want := range map[string]time.Duration{"10": 10 * time.Second, "1500ms": 1500 * time.Millisecond, "2m": 2 * time.Minute} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseDuration("ten"); err == nil {
		t.Error(`ParseDuration("ten") succeeded`)
	}
}

func TestParseMapReadsPerFunctionSettings(t *testing.T) {
	m, err := ParseMap(" login=5s, gen-avatar=30s ")
	if err != nil || len(m) != 2 || m["login"] != "5s" || m["gen-avatar"] != "30s" {
		t.Errorf("ParseMap = %v, %v", m, err)
	}
	if _, err := ParseMap("login"); err == nil {
		t.Error("a pair without = was accepted")
	}
}

func TestParseKeepsDefaultsOfUnsetOrEmptyVariables(t *testing.T) {
	type settings struct {
		Idle     time.Duration            `env:"TEST_IDLE"`
		Exec     time.Duration            `env:"TEST_EXEC"`
		Name     string                   `env:"TEST_NAME"`
		Count    int                      `env:"TEST_COUNT"`
		PerFn    map[string]time.Duration `env:"TEST_PER_FN"`
		Inflight map[string]int           `env:"TEST_INFLIGHT"`
		List     []string                 `env:"TEST_LIST"`
		On       bool                     `env:"TEST_ON"`
	}
	t.Setenv("TEST_IDLE", "")
	t.Setenv("TEST_EXEC", "30") // OpenFaaS's exec_timeout form: whole seconds
	t.Setenv("TEST_PER_FN", "login=5s, gen-avatar=30")
	t.Setenv("TEST_INFLIGHT", "login=8")
	t.Setenv("TEST_LIST", "a, b,")
	t.Setenv("TEST_ON", "yes")
	s := settings{Idle: time.Minute, Name: "default", Count: 3}
	if err := Parse(&s); err != nil {
		t.Fatal(err)
	}
	if s.Idle != time.Minute || s.Name != "default" || s.Count != 3 {
		t.Errorf("defaults lost: %+v", s)
	}
	if s.Exec != 30*time.Second || s.PerFn["login"] != 5*time.Second || s.PerFn["gen-avatar"] != 30*time.Second ||
		s.Inflight["login"] != 8 || len(s.List) != 2 || s.List[1] != "b" || !s.On {
		t.Errorf("parsed %+v", s)
	}
}

func TestParseNamesEveryBadVariableSorted(t *testing.T) {
	type inner struct {
		Idle time.Duration `env:"TEST_WS_IDLE_TIMEOUT"`
	}
	type settings struct {
		Queue    int            `env:"TEST_WS_SEND_QUEUE"`
		Inner    inner          // nested structs are read too
		Limit    Rate           `env:"TEST_QUOTA"`
		Inflight map[string]int `env:"TEST_INFLIGHTS"`
		On       bool           `env:"TEST_FAIL_CLOSED"`
	}
	t.Setenv("TEST_WS_SEND_QUEUE", "many")
	t.Setenv("TEST_WS_IDLE_TIMEOUT", "soon")
	t.Setenv("TEST_QUOTA", "10")
	t.Setenv("TEST_INFLIGHTS", "login=0")
	t.Setenv("TEST_FAIL_CLOSED", "perhaps")
	want := `$TEST_FAIL_CLOSED: want true or false, not "perhaps"; ` +
		`$TEST_INFLIGHTS: login: not a positive count: "0"; ` +
		`$TEST_QUOTA: not a rate: "10" (want COUNT/PERIOD such as 10/15m, or off); ` +
		`$TEST_WS_IDLE_TIMEOUT: not a duration: "soon"; ` +
		`$TEST_WS_SEND_QUEUE: not an integer: "many"`
	for range 5 {
		var s settings
		if err := Parse(&s); err == nil || err.Error() != want {
			t.Fatalf("Parse: %v\nwant: %s", err, want)
		}
	}
}

func TestSettingsListsEveryVariableWithItsDefault(t *testing.T) {
	got := map[string]string{}
	for _, s := range Settings(Default()) {
		got[s.Name] = s.Default
	}
	for name, want := range map[string]string{
		"TOKEN_TTL": "24h", "MAX_BODY_BYTES": "65536", "QUOTA_TOPICS": "50/24h", "RATE_LIMIT_TIMEOUT": "500ms",
		"HTTP_IDLE_TIMEOUT": "2m", "LOGIN_LIMIT_FAIL_CLOSED": "false", "REDIS_PREFIX": "tidings:",
	} {
		if got[name] != want {
			t.Errorf("%s: default %q, want %q", name, got[name], want)
		}
	}
	if _, ok := got["JWT_SECRET"]; ok {
		t.Error("a secret is listed as a setting")
	}
}

func TestLimitsHaveDefaultsAndCanBeTurnedOff(t *testing.T) {
	t.Setenv("QUOTA_PUBLISHES", "off")
	t.Setenv("LOGIN_LIMIT_ACCOUNT", "3/2s")
	t.Setenv("LOGIN_LIMIT_FAIL_CLOSED", "true")
	l := DefaultLimits()
	if err := Parse(&l); err != nil {
		t.Fatal(err)
	}
	if !l.PublishesPerUser.Off() {
		t.Errorf("QUOTA_PUBLISHES=off gave %v", l.PublishesPerUser)
	}
	if l.LoginPerAccount != (Rate{3, 2 * time.Second}) || !l.LoginFailClosed {
		t.Errorf("login limit %v fail closed %v, want 3/2s and true", l.LoginPerAccount, l.LoginFailClosed)
	}
	if l.TopicsPerUser != (Rate{50, 24 * time.Hour}) || l.Timeout != 500*time.Millisecond {
		t.Errorf("defaults: topics %v, timeout %v", l.TopicsPerUser, l.Timeout)
	}
	for _, bad := range []string{"10", "x/1m", "0/1m", "10/soon", "10/-1s"} {
		t.Setenv("QUOTA_JOBS", bad)
		l := DefaultLimits()
		if err := Parse(&l); err == nil {
			t.Errorf("QUOTA_JOBS=%s was accepted", bad)
		}
	}
}

func TestRedisOptionsHaveShortTimeoutsUnlessTheURLSetsThem(t *testing.T) {
	r, err := ParseRedis("redis://127.0.0.1:6379/2")
	if err != nil {
		t.Fatal(err)
	}
	opts := r.single
	if opts.DialTimeout != RedisDialTimeout || opts.ReadTimeout != RedisReadTimeout || opts.WriteTimeout != RedisWriteTimeout || opts.DB != 2 {
		t.Errorf("options %+v: want the tidings timeouts and db 2", opts)
	}
	r, err = ParseRedis("redis://127.0.0.1:6379/0?dial_timeout=7s&read_timeout=8s")
	if err != nil {
		t.Fatal(err)
	}
	opts = r.single
	if opts.DialTimeout != 7*time.Second || opts.ReadTimeout != 8*time.Second || opts.WriteTimeout != RedisWriteTimeout {
		t.Errorf("options %+v: the URL's timeouts must win", opts)
	}
	if _, err := ParseRedis("http://nope"); err == nil {
		t.Error("a non-redis URL was accepted")
	}
}

func TestAClusterURLNamesEverySeedAndKeepsTheOptions(t *testing.T) {
	r, err := ParseRedis("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:7002?read_timeout=9s&max_redirects=5")
	if err != nil {
		t.Fatal(err)
	}
	if !r.IsCluster() {
		t.Fatal("redis+cluster:// was not taken as a cluster")
	}
	o := r.cluster
	if want := []string{"10.0.0.1:7000", "10.0.0.2:7001", "10.0.0.3:7002"}; !slices.Equal(o.Addrs, want) {
		t.Errorf("seeds %v, want %v", o.Addrs, want)
	}
	if o.Username != "u" || o.Password != "p" || o.ReadTimeout != 9*time.Second || o.MaxRedirects != 5 || o.DialTimeout != RedisDialTimeout || o.TLSConfig != nil {
		t.Errorf("options %+v: want the URL's credentials and options, tidings's other timeouts, no TLS", o)
	}
	r, err = ParseRedis("rediss+cluster://10.0.0.1:7000/0")
	if err != nil || !r.IsCluster() || r.cluster.TLSConfig == nil {
		t.Errorf("rediss+cluster:// with db 0: %v, want a cluster over TLS", err)
	}
	for _, bad := range []string{"redis+cluster://10.0.0.1:7000/2", "redis+cluster://10.0.0.1:7000?nope=1", "redis+cluster://h1:7000,bad"} {
		if _, err := ParseRedis(bad); err == nil {
			t.Errorf("%s was accepted", bad)
		}
	}
}

// A setting left at zero, or set negative, takes its default; one set to
// a positive value keeps it. Every package's New applies this one rule.
func TestOrDefaultFillsOnlyZeroAndNegativeSettings(t *testing.T) {
	for _, c := range []struct{ in, want time.Duration }{
		{0, time.Minute}, {-time.Second, time.Minute}, {time.Second, time.Second},
	} {
		got := c.in
		OrDefault(&got, time.Minute)
		if got != c.want {
			t.Errorf("OrDefault(%v, 1m) = %v, want %v", c.in, got, c.want)
		}
	}
	var failures uint32
	OrDefault(&failures, 5)
	if failures != 5 {
		t.Errorf("OrDefault of an unset uint32 = %d, want 5", failures)
	}
}
