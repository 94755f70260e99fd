package fn

import (
	"bytes"
	"context"
	"net/http"
	"time"
)

// Limits are one function's timeout and concurrency limit, as of-watchdog
// applies them (exec_timeout, max_inflight).
type Limits struct {
	Timeout     time.Duration // 0: none
	MaxInflight int           // 0: unbounded
}

// Answers for calls cut off by Limits.
var (
	Busy    = &Error{Status: http.StatusTooManyRequests, Code: "busy", Message: "function is at its concurrency limit; retry later"}
	Timeout = &Error{Status: http.StatusGatewayTimeout, Code: "timeout", Message: "function did not answer within its timeout"}
)

// Limit wraps next so that calls beyond MaxInflight get 429 at once and a
// call running past Timeout gets 504. A timed-out call keeps its slot until
// the handler returns, so the limit bounds real work, not just answers.
func Limit(next http.Handler, l Limits) http.Handler {
	var slots chan struct{}
	if l.MaxInflight > 0 {
		slots = make(chan struct{}, l.MaxInflight)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slots != nil {
			select {
			case slots <- struct{}{}:
			default:
				WriteError(w, Busy)
				return
			}
		}
		release := func() {
			if slots != nil {
				<-slots
			}
		}
		if l.Timeout <= 0 {
			defer release()
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), l.Timeout)
		defer cancel()
		buf := &bufferedResponse{header: http.Header{}}
		done := make(chan struct{})
		go func() {
			defer release()
			defer close(done)
			next.ServeHTTP(buf, r.WithContext(ctx))
		}()
		select {
		case <-done:
			buf.copyTo(w)
		case <-ctx.Done():
			WriteError(w, Timeout)
		}
	})
}

// bufferedResponse holds an answer until it is known to be in time.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) copyTo(w http.ResponseWriter) {
	for k, vs := range b.header {
		w.Header()[k] = vs
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}
