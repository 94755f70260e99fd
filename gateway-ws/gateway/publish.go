package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"tidings/gateway-ws/coordinator"
	"tidings/lib/fn"
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
	var msg coordinator.Message
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
		reason := map[string]string{"forbidden": ReasonUnauthorized, "not_found": ReasonNotFound}[refusal.Reason]
		if reason == "" {
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
// for clients that speak HTTP, with a Bearer token.
func (s *Server) servePublish(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	userID, err := s.tokens.Verify(strings.TrimSpace(token))
	if !ok || err != nil {
		fn.WriteError(w, fn.Unauthorized("missing or invalid Bearer token"))
		return
	}
	topicID, err := fn.ParseID("topic id", r.PathValue("id"))
	if err != nil {
		fn.WriteError(w, fn.AsError(err))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		fn.WriteError(w, fn.TooLarge(s.cfg.MaxBodyBytes))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
	defer cancel()
	res, err := s.cfg.Publisher.Publish(ctx, userID, topicID, body)
	var refused *Refused
	var exceeded *ratelimit.Exceeded
	switch {
	case errors.As(err, &exceeded):
		fn.WriteResponse(w, exceeded.Response())
		return
	case errors.As(err, &refused):
		status := map[string]int{ReasonUnauthorized: http.StatusForbidden, ReasonNotFound: http.StatusNotFound,
			ReasonInvalid: http.StatusBadRequest}[refused.Reason]
		if status == 0 {
			status = http.StatusServiceUnavailable
		}
		fn.WriteError(w, &fn.Error{Status: status, Code: refused.Reason, Message: publishRefusals[refused.Reason]})
		return
	case err != nil:
		s.log.Warn("publish failed", "user", userID, "topic", topicID, "err", err)
		fn.WriteError(w, &fn.Error{Status: http.StatusServiceUnavailable, Code: ReasonUnavailable, Message: "publishing is unavailable; retry later"})
		return
	}
	resp, _ := fn.JSON(http.StatusCreated, res)
	fn.WriteResponse(w, resp)
}

var publishRefusals = map[string]string{
	ReasonUnauthorized: "only the topic's owner may publish on it",
	ReasonNotFound:     "no such topic",
	ReasonInvalid:      "body must be {title, body?, email?} with a title of 1 to 200 characters",
	ReasonAborted:      "the publish was rolled back (a participant failed or timed out); nothing was stored",
	ReasonPending:      "the publish's outcome is not known yet; it is committed or rolled back shortly, check the notifications before publishing again",
}
