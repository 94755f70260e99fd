package fn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"

	"tidings/lib/logging"
)

// DefaultMaxBodyBytes bounds a request body unless configured otherwise.
const DefaultMaxBodyBytes = 64 << 10

// CallIDHeader carries the request id; the OpenFaaS gateway sets it too.
const CallIDHeader = "X-Call-Id"

// Adapter serves one Handler. Its ServeHTTP method is the of-watchdog http
// mode upstream; HandleLambda is the AWS Lambda entry. Both apply the same
// body limit, call limits and error mapping, so a handler answers alike on
// either. Use it by pointer: it holds the function's concurrency slots.
type Adapter struct {
	Handler      Handler
	MaxBodyBytes int64        // 0 means DefaultMaxBodyBytes
	Limits       Limits       // taken once the body is read; zero: none
	Log          *slog.Logger // nil: no logs

	slotsOnce sync.Once
	slots     chan struct{} // nil: unbounded
}

func (a *Adapter) maxBody() int64 {
	if a.MaxBodyBytes > 0 {
		return a.MaxBodyBytes
	}
	return DefaultMaxBodyBytes
}

func (a *Adapter) log() *slog.Logger { return logging.Or(a.Log) }

// TooLarge is the answer to a body over the limit.
func TooLarge(limit int64) *Error {
	return Errorf(http.StatusRequestEntityTooLarge, "too_large", "request body exceeds %d bytes", limit)
}

// invoke runs the handler, turning client errors into their status, and any
// other error or panic into a logged 500 that reveals nothing.
func (a *Adapter) invoke(req Request) (resp Response) {
	log := a.log().With("call_id", req.Header.Get(CallIDHeader))
	defer func() {
		if p := recover(); p != nil {
			log.Error("handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			resp = ErrorResponse(Internal())
		}
	}()
	resp, err := a.Handler.Handle(req)
	switch {
	case err == nil:
	case AsError(err) != nil:
		return ErrorResponse(AsError(err))
	case errors.Is(err, context.DeadlineExceeded):
		log.Warn("handler ran out of time", "err", err)
		return ErrorResponse(Timeout())
	default:
		log.Error("handler failed", "err", err)
		return ErrorResponse(Internal())
	}
	if resp.StatusCode == 0 {
		resp.StatusCode = http.StatusOK
	}
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	return resp
}
