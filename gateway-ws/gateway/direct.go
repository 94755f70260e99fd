package gateway

import (
	"context"
	"errors"
	"net/http"

	"tidings/gateway-ws/coordinator"
	"tidings/lib/auth"
	"tidings/lib/fn"
	"tidings/lib/notification"
)

// DirectRequest is the body of POST /api/notifications: a notification
// for the users named, {user_ids, title, body?, email?}.
type DirectRequest struct {
	UserIDs []int64 `json:"user_ids"`
	notification.Message
}

// serveDirect is POST /api/notifications: a direct notification from the
// operator, authorised by the admin key, published as one two-phase commit
// to the users named (coordinator.PublishDirect), with an optional
// Idempotency-Key scoped to the operator.
func (s *Server) serveDirect(w http.ResponseWriter, r *http.Request) {
	if err := auth.RequireAdmin(r.Header, s.cfg.AdminKey); err != nil {
		fn.WriteError(w, fn.AsError(err))
		return
	}
	s.answerOnce(w, r, "admin", func(ctx context.Context, body []byte) (fn.Response, bool) {
		var in DirectRequest
		if err := fn.DecodeBody(body, &in); err != nil {
			return fn.ErrorResponse(fn.AsError(err)), true
		}
		res, err := s.coord.PublishDirect(ctx, in.UserIDs, in.Message)
		outcome, perr := publishOutcome(err)
		s.metrics.Publishes.WithLabelValues(outcome).Inc()
		var refusal *coordinator.Refusal
		if errors.As(err, &refusal) {
			// Its message says what was wrong (the unknown ids, the
			// list's size), which the topic publish's answers do not.
			return fn.ErrorResponse(fn.Errorf(http.StatusBadRequest, string(refusal.Reason), "%s", refusal.Message)), true
		}
		if perr != nil {
			return s.publishAnswer(nil, perr, "direct to users", len(in.UserIDs))
		}
		return s.publishAnswer(res, nil)
	})
}
