package gateway

import (
	"context"
	"slices"
	"strings"
	"testing"

	"tidings/infra/grafana"
	"tidings/lib/metrics"
	"tidings/lib/testenv"
)

// TestEveryDashboardMetricIsExported checks the Grafana dashboard against
// the code, both ways: every metric a panel reads is registered by
// gateway-ws or by the function hosts, and every tidings metric they
// register is shown on some panel.
func TestEveryDashboardMetricIsExported(t *testing.T) {
	srv, err := New(context.Background(), testConfig(testenv.NewRedis(t), testenv.AdminURL()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.closeDeps)
	functionSide := metrics.NewRegistry()
	metrics.NewFunctions(functionSide) // what fnhost and the template's entry point export
	exported := append(srv.reg.Names(), functionSide.Names()...)

	panels, err := grafana.Panels("../../infra/grafana/dashboards/tidings.json")
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]bool{}
	for _, p := range panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			names := grafana.Metrics(target.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q reads no tidings metric", p.Title, target.Expr)
			}
			for _, name := range names {
				shown[name] = true
				if !slices.Contains(exported, name) {
					t.Errorf("panel %q reads %s, which the code does not export", p.Title, name)
				}
			}
		}
	}
	for _, name := range exported {
		if strings.HasPrefix(name, "tidings_") && !shown[name] {
			t.Errorf("%s is exported but on no dashboard panel", name)
		}
	}
}
