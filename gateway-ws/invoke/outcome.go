package invoke

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
)

// verdict is what a call's outcome says about the function, and whether
// calling it again may give another answer. judge is the one place that
// decides it; Failed, Retryable and the breaker read it.
type verdict int

const (
	// answered: the call succeeded (no error).
	answered verdict = iota
	// refused: the function's final verdict on the request, which calling
	// again cannot change: every 4xx but 408 and 429 (the contract
	// answers each client mistake with one), 501 (net/http's answer to a
	// transfer encoding it cannot read: the request is malformed), any
	// 3xx (no function redirects; the client already followed what it
	// could) and any other status outside the ones below.
	refused
	// notNow: 408 (the function's server did not receive the body in
	// time, so the function never acted) and 429 (a limit working as
	// meant). The function is not failing; a later call may succeed.
	notNow
	// failing: the function or its platform is failing: 500 (the
	// function's own failure), 502, 503 and 504 from the FaaS gateway,
	// and every call that got no answer (refused or reset connection, the
	// function's timeout, an open breaker, no free slot, marked down).
	failing
	// callerGaveUp: the caller's own context ended before the function
	// answered (ErrCallerDone). It says nothing of the function.
	callerGaveUp
)

// judge is the one judgement of a call's outcome.
func judge(err error) verdict {
	var ce *CallError
	switch {
	case err == nil:
		return answered
	case errors.Is(err, ErrCallerDone):
		return callerGaveUp
	case errors.As(err, &ce):
		switch ce.Status {
		case http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return failing
		case http.StatusRequestTimeout, http.StatusTooManyRequests:
			return notNow
		}
		return refused
	}
	return failing
}

// Failed reports whether a call's outcome shows the function or its
// platform failing, which counts against the function's circuit breaker:
// 500, 502, 503, 504, and a call that got no answer (refused or reset
// connection, the function's timeout). Never a 4xx, 408 and 429 included,
// nor a caller that gave up (ErrCallerDone).
func Failed(err error) bool { return judge(err) == failing }

// Retryable reports whether calling the function again may give another
// answer: yes for every failure Failed counts, for 408 and 429, and for a
// call whose caller gave up waiting (the function may answer a later call
// in time; whether there is time for one is the caller's to know). No for
// success and for a final answer: every other 4xx (400, 401, 403, 404,
// 409...), 501, and any 3xx or other status.
func Retryable(err error) bool {
	v := judge(err)
	return v == failing || v == notNow || v == callerGaveUp
}

// NotSent reports whether a failed call certainly never reached the
// function: refused by its breaker, its concurrency limit or its health,
// or its connection refused. A coordinator need not roll back a prepare
// that was never sent.
func NotSent(err error) bool {
	if errors.Is(err, ErrOpen) || errors.Is(err, ErrBusy) || errors.Is(err, ErrDown) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// callStatus labels a call's metric: the HTTP status, or why there was none.
func callStatus(a *Answer, err error) string {
	switch {
	case a != nil:
		return strconv.Itoa(a.Status)
	case errors.Is(err, ErrOpen):
		return "open"
	case errors.Is(err, ErrBusy):
		return "busy"
	case errors.Is(err, ErrDown):
		return "down"
	case errors.Is(err, ErrCallerDone):
		return "caller_done"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "error"
}
