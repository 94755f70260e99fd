// Package grafana reads the project's Grafana dashboards, so tests can
// check them against the metrics the code exports and the data a real
// Prometheus returns.
package grafana

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// Panel is a dashboard panel and its queries.
type Panel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// Panels reads a dashboard's panels.
func Panels(path string) ([]Panel, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []Panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d.Panels, nil
}

var metricName = regexp.MustCompile(`\btidings_[a-z0-9_]+`)

// Metrics returns the tidings metric families an expression reads, with
// histogram series (_bucket, _sum, _count) named by their family.
func Metrics(expr string) []string {
	var names []string
	for _, m := range metricName.FindAllString(expr, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(m, suffix); ok && strings.HasSuffix(base, "_seconds") {
				m = base
			}
		}
		if !slices.Contains(names, m) {
			names = append(names, m)
		}
	}
	return names
}
