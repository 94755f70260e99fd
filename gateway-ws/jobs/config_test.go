package jobs_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"tidings/gateway-ws/jobs"
	"tidings/lib/catalog"
	"tidings/lib/config"
)

// parse reads a Config from the environment over its defaults, as
// gateway-ws does, and checks it as New will.
func parse() (jobs.Config, error) {
	c := jobs.DefaultConfig()
	if err := config.Parse(&c); err != nil {
		return c, err
	}
	return c, c.Validate()
}

func TestConfigReadsPerFunctionSettings(t *testing.T) {
	t.Setenv("JOB_PREFIX", "app:jobs:")
	t.Setenv("JOB_TTL", "90s")
	t.Setenv("JOB_MAX_ATTEMPTS", "7")
	t.Setenv("JOB_CLAIM_IDLE", "2m")
	t.Setenv("JOB_CONCURRENCY", "3")
	t.Setenv("JOB_CONCURRENCIES", "send-mail=8, gen-avatar=2")
	t.Setenv("JOB_TIMEOUTS", "send-mail=20s")
	t.Setenv("JOB_PUBLIC_FUNCTIONS", "gen-avatar, list-topics")
	t.Setenv("JOB_METHODS", "report=get")
	c, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	if c.Prefix != "app:jobs:" || c.TTL != 90*time.Second || c.MaxAttempts != 7 || c.ClaimIdle != 2*time.Minute || c.Concurrency != 3 {
		t.Errorf("config %+v", c)
	}
	if c.Concurrencies["send-mail"] != 8 || c.Concurrencies["gen-avatar"] != 2 || c.Timeouts["send-mail"] != 20*time.Second {
		t.Errorf("per function: %v %v", c.Concurrencies, c.Timeouts)
	}
	if !slices.Equal(c.PublicFunctions, []string{"gen-avatar", "list-topics"}) {
		t.Errorf("public functions %v", c.PublicFunctions)
	}
	if c.MethodOf("gen-avatar") != http.MethodGet || c.Methods["report"] != http.MethodGet || c.MethodOf("report") != http.MethodGet {
		t.Errorf("methods %v: gen-avatar keeps GET (its catalogue method), report is GET", c.Methods)
	}
}

func TestConfigRefusesBadSettings(t *testing.T) {
	for name, env := range map[string][2]string{
		"claim idle not above the timeout": {"JOB_TIMEOUTS", "send-mail=5m"},
		"zero concurrency":                 {"JOB_CONCURRENCIES", "send-mail=0"},
		"not name=value":                   {"JOB_CONCURRENCIES", "send-mail"},
		"bad duration":                     {"JOB_TTL", "soon"},
		"a method other than GET and POST": {"JOB_METHODS", "gen-avatar=DELETE"},
		"default timeout above claim idle": {"JOB_TIMEOUT", "2m"},
		"not a number":                     {"JOB_MAX_ATTEMPTS", "many"},
		"an internal public function":      {"JOB_PUBLIC_FUNCTIONS", "gen-avatar,send-mail"},
		"a public function not catalogued": {"JOB_PUBLIC_FUNCTIONS", "report"},
		"braces in the prefix":             {"JOB_PREFIX", "app:{jobs}:"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("JOB_PREFIX", "app:jobs:")
			t.Setenv(env[0], env[1])
			if _, err := parse(); err == nil {
				t.Errorf("%s=%s accepted", env[0], env[1])
			}
		})
	}
}

// Without JOB_METHODS every function is called with its catalogue method,
// and one the catalogue does not list with POST.
func TestJobsCallFunctionsWithTheirCatalogueMethod(t *testing.T) {
	t.Setenv("JOB_PREFIX", "app:jobs:")
	c, err := parse()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range catalog.All() {
		if got := c.MethodOf(f.Name); got != f.Method {
			t.Errorf("%s called with %s, its catalogue method is %s", f.Name, got, f.Method)
		}
	}
	if got := c.MethodOf("report"); got != http.MethodPost {
		t.Errorf("a function outside the catalogue called with %s, want POST", got)
	}
}

// Every bad setting is named, each kind's sorted by function name, so the
// answer is the same on every run whatever the maps' order.
func TestConfigNamesEveryBadSettingInOneOrder(t *testing.T) {
	c := jobs.Config{
		Prefix:          "app:jobs:",
		Concurrencies:   map[string]int{"send-mail": 0, "gen-avatar": -1, "login": 2, "register": 0},
		Methods:         jobs.Methods{"b": "PUT", "a": "DELETE", "c": "GET"},
		Timeouts:        map[string]time.Duration{"z": 5 * time.Minute, "y": 0, "x": time.Second},
		PublicFunctions: []string{"send-mail", "gen-avatar", "counter-commit", "report"},
	}
	want := "jobs: concurrency of gen-avatar must be positive; concurrency of register must be positive; concurrency of send-mail must be positive; " +
		`method of a must be GET or POST, not "DELETE"; method of b must be GET or POST, not "PUT"; ` +
		"timeout of y (0s) must be positive and shorter than the claim idle time (1m0s); timeout of z (5m0s) must be positive and shorter than the claim idle time (1m0s); " +
		"public function counter-commit must be a catalogue function that is not internal; public function report must be a catalogue function that is not internal; " +
		"public function send-mail must be a catalogue function that is not internal"
	for range 20 { // map order changes from run to run; the answer must not
		if err := c.Validate(); err == nil || err.Error() != want {
			t.Fatalf("error:\n%v\nwant:\n%s", err, want)
		}
	}
}
