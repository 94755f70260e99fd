package fn

import (
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

// Busy is the answer to a call beyond Limits.MaxInflight.
func Busy() *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "busy", Message: "function is at its concurrency limit; retry later"}
}

// Timeout is the answer to a call past Limits.Timeout.
func Timeout() *Error {
	return &Error{Status: http.StatusGatewayTimeout, Code: "timeout", Message: "function did not answer within its timeout"}
}

// limited runs req under a.Limits: beyond MaxInflight calls in flight it
// answers 429 at once, and past Timeout 504. A timed-out call keeps its
// slot until the handler returns, so the limit bounds real work, not just
// answers. The caller has read the body already: a slot is never held
// waiting for a client.
func (a *Adapter) limited(req Request) Response {
	a.slotsOnce.Do(func() {
		if a.Limits.MaxInflight > 0 {
			a.slots = make(chan struct{}, a.Limits.MaxInflight)
		}
	})
	if a.slots != nil {
		select {
		case a.slots <- struct{}{}:
		default:
			return ErrorResponse(Busy())
		}
	}
	release := func() {
		if a.slots != nil {
			<-a.slots
		}
	}
	if a.Limits.Timeout <= 0 {
		defer release()
		return a.invoke(req)
	}
	ctx, cancel := context.WithTimeout(req.Context(), a.Limits.Timeout)
	defer cancel()
	req.WithContext(ctx)
	answer := make(chan Response, 1)
	go func() {
		defer release()
		answer <- a.invoke(req)
	}()
	select {
	case resp := <-answer:
		return resp
	case <-ctx.Done():
		return ErrorResponse(Timeout())
	}
}
