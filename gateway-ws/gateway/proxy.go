package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"tidings/lib/fn"
)

// PublicFunctions are the functions a browser may call through the gateway.
// Internal ones (notify-*, counter-*, send-mail) are never passed through.
var PublicFunctions = []string{
	"register", "login", "create-topic", "list-topics", "subscribe", "unsubscribe",
	"list-notifications", "ack-notification", "get-counter", "gen-avatar",
}

// Proxy passes /function/<name> through to the FaaS gateway, so that a
// browser needs one origin, with a timeout per function.
type Proxy struct {
	timeouts map[string]time.Duration // name -> timeout; a name is public iff present
	maxBody  int64
	rp       *httputil.ReverseProxy
}

// NewProxy returns a proxy to faasURL for the public functions, each with
// its timeout in timeouts or else def.
func NewProxy(faasURL string, public []string, timeouts map[string]time.Duration, def time.Duration, maxBody int64, log *slog.Logger) (*Proxy, error) {
	target, err := url.Parse(faasURL)
	if err != nil || target.Scheme == "" || target.Host == "" {
		return nil, errors.New("FaaS gateway URL must be absolute, e.g. http://127.0.0.1:8080")
	}
	p := &Proxy{timeouts: map[string]time.Duration{}, maxBody: maxBody}
	for _, name := range public {
		p.timeouts[name] = def
		if t, ok := timeouts[name]; ok {
			p.timeouts[name] = t
		}
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(r.Context().Err(), context.DeadlineExceeded) {
				fn.WriteError(w, fn.Timeout)
				return
			}
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				fn.WriteError(w, fn.TooLarge(maxBody))
				return
			}
			log.Warn("function call failed", "path", r.URL.Path, "err", err)
			fn.WriteError(w, &fn.Error{Status: http.StatusBadGateway, Code: "bad_gateway", Message: "function unavailable"})
		},
	}
	return p, nil
}

// ServeHTTP implements http.Handler for paths /function/<name>[/...].
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/function/")
	name, _, _ := strings.Cut(rest, "/")
	timeout, ok := p.timeouts[name]
	if !ok {
		fn.WriteError(w, fn.NotFound("no public function %q", name))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	r = r.WithContext(ctx)
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, p.maxBody)
	}
	p.rp.ServeHTTP(w, r)
}
