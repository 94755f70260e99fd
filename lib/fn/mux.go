package fn

import (
	"net/http"
	"strings"
)

// Routes serves mux, answering the requests it has no route for (its own
// 404 and 405, plain text) in the JSON error shape, with the 405's Allow
// header kept.
func Routes(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r) // which also sets the path values
			return
		}
		// No pattern: the mux's answer is a 404, a 405 or a redirect to
		// the cleaned path. Learn which without letting it write.
		probe := &statusProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		switch probe.status {
		case http.StatusNotFound:
			WriteError(w, NotFound("no route for %s", r.URL.Path))
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", probe.header.Get("Allow"))
			WriteError(w, Errorf(http.StatusMethodNotAllowed, "method_not_allowed",
				"%s is not allowed here; use %s", r.Method, strings.ReplaceAll(probe.header.Get("Allow"), ", ", " or ")))
		default:
			h.ServeHTTP(w, r)
		}
	})
}

// statusProbe records the status and headers a handler would answer.
type statusProbe struct {
	header http.Header
	status int
}

func (p *statusProbe) Header() http.Header { return p.header }
func (p *statusProbe) Write(b []byte) (int, error) {
	if p.status == 0 {
		p.status = http.StatusOK
	}
	return len(b), nil
}
func (p *statusProbe) WriteHeader(status int) {
	if p.status == 0 {
		p.status = status
	}
}
