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
	t.Setenv("JOB_PUBLIC_FUNCTIONS", "gen-avatar, report")
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
	if !slices.Equal(c.PublicFunctions, []string{"gen-avatar", "report"}) {
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
