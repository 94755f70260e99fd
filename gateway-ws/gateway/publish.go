package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"tidings/gateway-ws/coordinator"
	"tidings/lib/catalog"
	"tidings/lib/fn"
	"tidings/lib/notification"
	"tidings/lib/ratelimit"
)

// Refusal reasons of a publish, beside the join reasons.
const (
	ReasonInvalid  = "invalid"
	ReasonNotFound = "not_found"
	ReasonAborted  = "aborted"
	// ReasonPending: the outcome is not known yet (Redis did not answer
	// in time); recovery commits or rolls back, and the notification, if
	// committed, shows up in the lists and on the channels.
	ReasonPending = "pending"
)

// coordinatorPublisher publishes through the two-phase commit coordinator.
type coordinatorPublisher struct {
	coord    *coordinator.Coordinator
	outcomes *prometheus.CounterVec // by outcome: committed, aborted, pending, refused, failed
}

// Publish implements Publisher: the reply is the committed notification's
// {notification_id, tx_id, recipients}.
func (p coordinatorPublisher) Publish(ctx context.Context, userID, topicID int64, payload json.RawMessage) (any, error) {
	var msg notification.Message
	if err := fn.DecodeBody(payload, &msg); err != nil {
		return nil, &Refused{ReasonInvalid}
	}
	res, err := p.coord.Publish(ctx, userID, topicID, msg)
	outcome, err := publishOutcome(err)
	p.outcomes.WithLabelValues(outcome).Inc()
	if err != nil {
		return nil, err
	}
	return res, nil
}

// refusalReasons is the reason the publisher is told for each refusal of
// the coordinator: the one place its refusals become Phoenix reasons.
var refusalReasons = map[coordinator.Reason]string{
	coordinator.Invalid:   ReasonInvalid,
	coordinator.NotFound:  ReasonNotFound,
	coordinator.Forbidden: ReasonUnauthorized,
}

// publishOutcome names the outcome of a coordinator's publish (committed,
// refused, aborted, pending or failed) and turns its error into what the
// client is answered: a *Refused with the reason, or the error itself.
func publishOutcome(err error) (string, error) {
	var refusal *coordinator.Refusal
	var aborted *coordinator.AbortedError
	var pending *coordinator.PendingError
	switch {
	case err == nil:
		return "committed", nil
	case errors.As(err, &refusal):
		reason, ok := refusalReasons[refusal.Reason]
		if !ok {
			reason = ReasonInvalid
		}
		return "refused", &Refused{reason}
	case errors.As(err, &aborted):
		return "aborted", &Refused{ReasonAborted}
	case errors.As(err, &pending):
		return "pending", &Refused{ReasonPending}
	}
	return "failed", err
}

// servePublish is POST /api/topics/{id}/notifications: the `publish` push
// for clients that speak HTTP, with a Bearer token, and an optional
// Idempotency-Key (idempotency.go) scoped to the caller.
func (s *Server) servePublish(w http.ResponseWriter, r *http.Request) {
	userID, err := s.tokens.For(catalog.ScopePublish).Bearer(r.Header)
	if err != nil {
		fn.WriteError(w, fn.AsError(err))
		return
	}
	topicID, err := fn.ParseID("topic id", r.PathValue("id"))
	if err != nil {
		fn.WriteError(w, fn.AsError(err))
		return
	}
	s.answerOnce(w, r, fmt.Sprintf("user:%d", userID), func(ctx context.Context, body []byte) (fn.Response, bool) {
		res, err := s.cfg.Publisher.Publish(ctx, userID, topicID, body)
		return s.publishAnswer(res, err, "user", userID, "topic", topicID)
	})
}

// publishAnswer is the HTTP answer to a publish that returned res, err
// (the log names it by what): 201 with res, or the error's; final is
// false for the answers that wrote nothing and invite a retry (429, 503
// but pending), which an Idempotency-Key does not keep.
func (s *Server) publishAnswer(res any, err error, what ...any) (resp fn.Response, final bool) {
	var refused *Refused
	var exceeded *ratelimit.Exceeded
	switch {
	case errors.As(err, &exceeded):
		return exceeded.Response(), false
	case errors.As(err, &refused):
		e := refusedOverHTTP(refused)
		return fn.ErrorResponse(e), e.Status < http.StatusInternalServerError || refused.Reason == ReasonPending
	case err != nil:
		s.log.Warn("publish failed", append(what, "err", err)...)
		return fn.ErrorResponse(&fn.Error{Status: http.StatusServiceUnavailable, Code: ReasonUnavailable, Message: "publishing is unavailable; retry later"}), false
	}
	resp, _ = fn.JSON(http.StatusCreated, res)
	return resp, true
}

// publishRefusals is the HTTP answer to each reason a publish is refused
// with (the socket answers with the reason alone): the one place a
// refusal becomes an HTTP status.
var publishRefusals = map[string]struct {
	status  int
	message string
}{
	ReasonUnauthorized: {http.StatusForbidden, "only the topic's owner may publish on it"},
	ReasonNotFound:     {http.StatusNotFound, "no such topic"},
	ReasonInvalid:      {http.StatusBadRequest, fmt.Sprintf("body must be {title, body?, email?} with a title of 1 to %d characters", notification.MaxTitle)},
	ReasonAborted:      {http.StatusServiceUnavailable, "the publish was rolled back (a participant failed or timed out); nothing was stored"},
	ReasonPending:      {http.StatusServiceUnavailable, "the publish's outcome is not known yet; it is committed or rolled back shortly, check the notifications before publishing again"},
}

// refusedOverHTTP is the error answer to a refused publish: the reason is
// its code; a reason publishRefusals does not know is a 503.
func refusedOverHTTP(r *Refused) *fn.Error {
	answer, ok := publishRefusals[r.Reason]
	if !ok {
		answer.status = http.StatusServiceUnavailable
	}
	return &fn.Error{Status: answer.status, Code: r.Reason, Message: answer.message}
}
