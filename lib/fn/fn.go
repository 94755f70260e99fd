// Package fn is the function contract every tidings function is written
// against, and the adapters that serve it over HTTP (of-watchdog's http mode,
// the local FaaS host) and on AWS Lambda.
//
// Request and Response keep the field shape of OpenFaaS's golang-http
// template (github.com/openfaas/templates-sdk/go-http), so a handler moves to
// the upstream template by changing one import.
package fn

import (
	"context"
	"net/http"
)

// Request is one function invocation.
type Request struct {
	Body        []byte
	Header      http.Header
	QueryString string
	Method      string
	Host        string

	ctx context.Context
}

// Context returns the request's context; never nil.
func (r *Request) Context() context.Context {
	if r.ctx == nil {
		return context.Background()
	}
	return r.ctx
}

// WithContext sets the request's context.
func (r *Request) WithContext(ctx context.Context) {
	r.ctx = ctx
}

// Response is what a function answers.
type Response struct {
	Body       []byte
	StatusCode int
	Header     http.Header
}

// Handler is a function: a pure function of the request and the dependencies
// it was built with.
type Handler interface {
	Handle(req Request) (Response, error)
}

// HandlerFunc adapts an ordinary function to Handler.
type HandlerFunc func(req Request) (Response, error)

// Handle calls f(req).
func (f HandlerFunc) Handle(req Request) (Response, error) { return f(req) }
