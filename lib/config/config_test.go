package config

import (
	"os"
	"path/filepath"
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

func TestMapParsesPerFunctionSettings(t *testing.T) {
	t.Setenv("PER_FN", " login=5s, gen-avatar=30s ")
	m, err := Map("PER_FN")
	if err != nil || len(m) != 2 || m["login"] != "5s" || m["gen-avatar"] != "30s" {
		t.Errorf("Map = %v, %v", m, err)
	}
	t.Setenv("PER_FN", "login")
	if _, err := Map("PER_FN"); err == nil {
		t.Error("a pair without = was accepted")
	}
}

func TestLimitsHaveDefaultsAndCanBeTurnedOff(t *testing.T) {
	t.Setenv("QUOTA_PUBLISHES", "off")
	t.Setenv("LOGIN_LIMIT_ACCOUNT", "3/2s")
	t.Setenv("LOGIN_LIMIT_FAIL_CLOSED", "true")
	l, err := LoadLimits()
	if err != nil {
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
		if _, err := LoadLimits(); err == nil {
			t.Errorf("QUOTA_JOBS=%s was accepted", bad)
		}
	}
}

func TestRedisOptionsHaveShortTimeoutsUnlessTheURLSetsThem(t *testing.T) {
	opts, err := RedisOptions("redis://127.0.0.1:6379/2")
	if err != nil {
		t.Fatal(err)
	}
	if opts.DialTimeout != RedisDialTimeout || opts.ReadTimeout != RedisReadTimeout || opts.WriteTimeout != RedisWriteTimeout || opts.DB != 2 {
		t.Errorf("options %+v: want the tidings timeouts and db 2", opts)
	}
	opts, err = RedisOptions("redis://127.0.0.1:6379/0?dial_timeout=7s&read_timeout=8s")
	if err != nil {
		t.Fatal(err)
	}
	if opts.DialTimeout != 7*time.Second || opts.ReadTimeout != 8*time.Second || opts.WriteTimeout != RedisWriteTimeout {
		t.Errorf("options %+v: the URL's timeouts must win", opts)
	}
	if _, err := RedisOptions("http://nope"); err == nil {
		t.Error("a non-redis URL was accepted")
	}
}
