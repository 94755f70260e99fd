package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"tidings/gateway-ws/coordinator"
)

func TestHTTPPublishWhoseOutcomeIsUnknownAnswers503Pending(t *testing.T) {
	db, cfg := newDBConfig(t)
	// The coordinator could not tell whether its decision landed.
	cfg.Publisher = coordinatorPublisherOutcome(&coordinator.PendingError{TxID: "tx-unknown"})
	g := startGateway(t, cfg)
	topicID, ownerID, _ := seedTopic(t, db, 0)
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
