package invoke

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"
)

// RunHealthChecks checks every named function each HealthInterval until ctx
// ends. A function is marked down after HealthFailures failed checks in a
// row (calls to it then fail fast with ErrDown) and up after one success.
func (inv *Invoker) RunHealthChecks(ctx context.Context, names []string) {
	if inv.cfg.HealthInterval <= 0 {
		return
	}
	tick := time.NewTicker(inv.cfg.HealthInterval)
	defer tick.Stop()
	for {
		for _, name := range names {
			inv.CheckHealth(ctx, name)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// CheckHealth runs one health check of a function: the FaaS gateway's
// GET /system/function/<name> must answer 200 with a replica available.
func (inv *Invoker) CheckHealth(ctx context.Context, name string) bool {
	f := inv.function(name)
	ok := inv.probe(ctx, name)
	f.mu.Lock()
	defer f.mu.Unlock()
	if ok {
		if f.down {
			inv.log.Info("function is up again", "function", name)
		}
		f.failures, f.down = 0, false
		return true
	}
	f.failures++
	limit := inv.cfg.HealthFailures
	if limit <= 0 {
		limit = 3
	}
	if f.failures >= limit && !f.down {
		f.down = true
		inv.log.Warn("function marked down", "function", name, "failed_checks", f.failures)
	}
	return false
}

func (inv *Invoker) probe(ctx context.Context, name string) bool {
	timeout := inv.cfg.settings(name).Timeout
	if timeout <= 0 || timeout > 5*time.Second {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, inv.url("/system/function/"+name), nil)
	if err != nil {
		return false
	}
	if user, pass, ok := strings.Cut(inv.cfg.BasicAuth, ":"); ok {
		req.SetBasicAuth(user, pass)
	}
	resp, err := inv.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var status struct {
		AvailableReplicas int `json:"availableReplicas"`
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&status) == nil && status.AvailableReplicas > 0
}

func sortStatuses(s []Status) { sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name }) }
