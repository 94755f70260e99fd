package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"tidings/gateway-ws/coordinator"
	"tidings/lib/testenv"
)

func TestHTTPPublishWhoseOutcomeIsUnknownAnswers503Pending(t *testing.T) {
	db, cfg := newDBConfig(t)
	// The coordinator could not tell whether its decision landed.
	cfg.Publisher = coordinatorPublisherOutcome(&coordinator.PendingError{TxID: "tx-unknown"})
	g := startGateway(t, cfg)
	topicID, ownerID, _ := testenv.Topic(t, db.Pool, 0)
	status, body := postJSON(t, g.httpURL(fmt.Sprintf("/api/topics/%d/notifications", topicID)), `{"title":"t"}`,
		http.Header{"Authorization": {"Bearer " + token(t, ownerID)}})
	if status != http.StatusServiceUnavailable || !strings.Contains(body, `"code":"pending"`) {
		t.Errorf("publish pending: %d %s, want 503 pending in the error shape", status, body)
	}
}

// coordinatorPublisherOutcome maps err as coordinatorPublisher does.
func coordinatorPublisherOutcome(err error) Publisher {
	return publisherFunc(func(context.Context, int64, int64, json.RawMessage) (any, error) {
		_, err := publishOutcome(err)
		return nil, err
	})
}

// TestHTTPPublishRefusalsKeepTheirStatusAndCode runs refused publishes
// through the real coordinator (no participant is reached: each is refused
// before a transaction begins) and checks the answer of each refusal.
func TestHTTPPublishRefusalsKeepTheirStatusAndCode(t *testing.T) {
	db, cfg := newDBConfig(t)
	g := startGateway(t, cfg)
	topicID, ownerID, subs := testenv.Topic(t, db.Pool, 1)
	url := func(topic int64) string { return g.httpURL(fmt.Sprintf("/api/topics/%d/notifications", topic)) }
	bearer := func(user int64) http.Header { return http.Header{"Authorization": {"Bearer " + token(t, user)}} }
	for _, c := range []struct {
		name, url, body string
		header          http.Header
		status          int
		code            string
	}{
		{"no token", url(topicID), `{"title":"t"}`, http.Header{}, 401, "unauthorized"},
		{"not a Bearer token", url(topicID), `{"title":"t"}`, http.Header{"Authorization": {"Basic " + token(t, ownerID)}}, 401, "unauthorized"},
		{"a subscriber, not the owner", url(topicID), `{"title":"t"}`, bearer(subs[0]), 403, ReasonUnauthorized},
		{"no such topic", url(topicID + 1000), `{"title":"t"}`, bearer(ownerID), 404, ReasonNotFound},
		{"blank title", url(topicID), `{"title":" "}`, bearer(ownerID), 400, ReasonInvalid},
		{"unknown field", url(topicID), `{"title":"t","x":1}`, bearer(ownerID), 400, ReasonInvalid},
	} {
		status, body := postJSON(t, c.url, c.body, c.header)
		if status != c.status || !strings.Contains(body, fmt.Sprintf(`"code":%q`, c.code)) {
			t.Errorf("%s: %d %s, want %d with code %q", c.name, status, body, c.status, c.code)
		}
	}
}

func TestEveryCoordinatorRefusalHasAReasonAndAnHTTPStatus(t *testing.T) {
	for _, c := range []struct {
		err     error
		outcome string
		reason  string
		status  int
	}{
		{&coordinator.Refusal{Reason: coordinator.Invalid}, "refused", ReasonInvalid, http.StatusBadRequest},
		{&coordinator.Refusal{Reason: coordinator.NotFound}, "refused", ReasonNotFound, http.StatusNotFound},
		{&coordinator.Refusal{Reason: coordinator.Forbidden}, "refused", ReasonUnauthorized, http.StatusForbidden},
		{&coordinator.AbortedError{TxID: "t"}, "aborted", ReasonAborted, http.StatusServiceUnavailable},
		{&coordinator.PendingError{TxID: "t"}, "pending", ReasonPending, http.StatusServiceUnavailable},
	} {
		outcome, err := publishOutcome(c.err)
		var refused *Refused
		if outcome != c.outcome || !errors.As(err, &refused) || refused.Reason != c.reason {
			t.Errorf("%v: outcome %q, %v; want %q, reason %q", c.err, outcome, err, c.outcome, c.reason)
			continue
		}
		if e := refusedOverHTTP(refused); e.Status != c.status || e.Code != c.reason || e.Message == "" {
			t.Errorf("%v over HTTP: %+v, want %d %q with a message", c.err, e, c.status, c.reason)
		}
	}
	if outcome, err := publishOutcome(errors.New("redis down")); outcome != "failed" || err == nil {
		t.Errorf("a failure: %q %v, want failed and the error itself", outcome, err)
	}
	if e := refusedOverHTTP(&Refused{Reason: "title required"}); e.Status != http.StatusServiceUnavailable {
		t.Errorf("a reason of a Publisher's own: %+v, want 503", e)
	}
}
