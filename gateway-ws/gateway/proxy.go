package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"tidings/gateway-ws/invoke"
	"tidings/lib/fn"
)

// Proxy passes /function/<name> through to the FaaS gateway, so that a
// browser needs one origin. Each call goes through the function's breaker,
// concurrency limit and timeout, like every call gateway-ws makes.
type Proxy struct {
	calls   *invoke.Invoker
	public  map[string]bool
	maxBody int64
	client  clientAddress
	log     *slog.Logger
}

// NewProxy returns a proxy for the public functions (catalog.Public: the
// internal ones are never passed through). It tells them the
// client's address in X-Forwarded-For, taken from the peer, or from behind
// the trustedProxies (addresses and CIDR ranges) when the peer is one.
func NewProxy(calls *invoke.Invoker, public []string, maxBody int64, trustedProxies []string, log *slog.Logger) (*Proxy, error) {
	client, err := newClientAddress(trustedProxies)
	if err != nil {
		return nil, err
	}
	p := &Proxy{calls: calls, public: map[string]bool{}, maxBody: maxBody, client: client, log: log}
	for _, name := range public {
		p.public[name] = true
	}
	return p, nil
}

// hopHeaders belong to one connection and are not passed on.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length"}

// ServeHTTP implements http.Handler for paths /function/<name>[/...].
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/function/")
	name, _, _ := strings.Cut(rest, "/")
	if !p.public[name] {
		fn.WriteError(w, fn.NotFound("no public function %q", name))
		return
	}
	// The whole body first, under the server's body deadline (fn.NewServer):
	// a slow client never holds one of the function's call slots.
	body, ferr := fn.ReadBody(w, r, p.maxBody)
	if ferr != nil {
		fn.WriteError(w, ferr)
		return
	}
	header := r.Header.Clone()
	for _, h := range hopHeaders {
		header.Del(h)
	}
	header.Del("Forwarded") // the one client address a function sees is ours
	header.Set("X-Forwarded-For", p.client.of(r))
	answer, err := p.calls.Send(r.Context(), name, invoke.Request{Method: r.Method, Query: r.URL.RawQuery, Header: header, Body: body})
	if err != nil {
		fn.WriteError(w, callFailure(name, err, p.log))
		return
	}
	for k, vs := range answer.Header {
		w.Header()[k] = vs
	}
	for _, h := range hopHeaders {
		w.Header().Del(h)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(answer.Body)))
	w.WriteHeader(answer.Status)
	_, _ = w.Write(answer.Body)
}

// callFailure is the client's answer to a call that got no answer.
func callFailure(name string, err error, log *slog.Logger) *fn.Error {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, invoke.ErrCallerDone):
		return fn.Timeout()
	case errors.Is(err, invoke.ErrBusy):
		return fn.Busy()
	case errors.Is(err, invoke.ErrOpen), errors.Is(err, invoke.ErrDown):
		return &fn.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: name + " is unavailable; retry later"}
	}
	log.Warn("function call failed", "function", name, "err", err)
	return &fn.Error{Status: http.StatusBadGateway, Code: "bad_gateway", Message: "function unavailable"}
}
