package gateway

import (
	"io"
	"net/http"
	"testing"

	"tidings/functions"
	"tidings/infra/fnhost"
	"tidings/lib/config"
	"tidings/lib/logging"
	"tidings/lib/testenv"
)

// realFunctions serves every function of the catalogue (stack.yml) on the
// test's database and Redis prefix, as the FaaS gateway would.
func realFunctions(t *testing.T, db *testenv.DB, rd *testenv.Redis) http.Handler {
	t.Helper()
	deps := &functions.Deps{
		Config: config.Config{RedisPrefix: rd.Prefix, InternalKey: testInternalKey, JWTSecret: testSecret, Limits: config.DefaultLimits(), MaxBodyBytes: 64 << 10},
		DBs:    db.DBs(), Redis: rd.Client, Tokens: testTokens,
	}
	fns, err := fnhost.Load("../../stack.yml", deps)
	if err != nil {
		t.Fatal(err)
	}
	return fnhost.New(fns, 64<<10, logging.NewTo(io.Discard, "error", "test"))
}
