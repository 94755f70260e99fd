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
	// answers each client mistake with one).
	refused
	// notNow: 408 (the function's server did not receive the body in
	// time, so the function never acted) and 429 (a limit working as
	// meant). The function is not failing; a later call may succeed.
	notNow
	// noVerdict: any other answer outside 2xx and 4xx (any 3xx, 501, 505,
	// 507, 52x...): not a verdict on the request, so a later call may
	// give one. Not counted against the breaker either: the breaker opens
	// on the failures it has always counted (below), and an unexpected
	// status is no sign the function is down.
	noVerdict
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
		if ce.Status/100 == 4 {
			return refused
		}
		return noVerdict
	}
	return failing
}

// Failed reports whether a call's outcome shows the function or its
// platform failing, which counts against the function's circuit breaker:
// 500, 502, 503, 504, and a call that got no answer (refused or reset
// connection, the function's timeout). Never a 4xx, 408 and 429 included,
// nor a 3xx or another 5xx (501, 505...), nor a caller that gave up
// (ErrCallerDone).
func Failed(err error) bool { return judge(err) == failing }

// Retryable reports whether calling the function again may give another
// answer: no for success and for a final answer, which is a 4xx other
// than 408 and 429 (400, 401, 403, 404, 409...); yes for everything else:
// every failure Failed counts, 408, 429, any 3xx and every other 5xx (501,
// 505...: not a verdict on the request), and a call whose caller gave up
// waiting (the function may answer a later call in time; whether there is
// time for one is the caller's to know).
func Retryable(err error) bool {
	v := judge(err)
	return v != answered && v != refused
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
