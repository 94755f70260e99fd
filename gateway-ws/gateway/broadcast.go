package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"tidings/gateway-ws/coordinator"
	"tidings/lib/auth"
	"tidings/lib/fn"
)

// Broadcast sends event with payload to every member of topic on every
// replica.
func (s *Server) Broadcast(ctx context.Context, topic, event string, payload any) error {
	frame, err := BroadcastFrame(topic, event, payload)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, brokerCallTimeout)
	defer cancel()
	return s.broker.Publish(ctx, topic, frame)
}

// usersTopic is the broker topic every replica hears user batches on.
const usersTopic = "_users"

// DeliverUsers sends batch to its users' channels on every replica, as one
// Redis message that each replica expands for its own members (deliverUsers):
// the coordinator's live delivery and the ack relay's counter updates.
func (s *Server) DeliverUsers(ctx context.Context, batch coordinator.UserBatch) error {
	data, err := json.Marshal(batch)
	if err != nil {
		return fmt.Errorf("encode a batch of %d %s events: %w", len(batch.Unread), batch.Event, err)
	}
	ctx, cancel := context.WithTimeout(ctx, brokerCallTimeout)
	defer cancel()
	return s.broker.Publish(ctx, usersTopic, data)
}

// hearUsers hands a batch heard on usersTopic to this replica's members.
func (s *Server) hearUsers(payload string) {
	var batch coordinator.UserBatch
	if err := json.Unmarshal([]byte(payload), &batch); err != nil {
		s.log.Error("undecodable user batch; dropped", "err", err)
		return
	}
	s.hub.deliverUsers(batch)
}

// broadcastRequest is the body of POST /internal/broadcast.
type broadcastRequest struct {
	Topic   string          `json:"topic"`
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload"`
}

// serveBroadcast lets tidings' own services push an event to a topic's
// members on every replica; it needs the internal key.
func (s *Server) serveBroadcast(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(auth.InternalKeyHeader)
	if s.cfg.InternalKey == "" || subtle.ConstantTimeCompare([]byte(key), []byte(s.cfg.InternalKey)) != 1 {
		fn.WriteError(w, fn.Unauthorized("missing or wrong internal key"))
		return
	}
	body, ferr := fn.ReadBody(w, r, s.cfg.MaxBodyBytes)
	if ferr != nil {
		fn.WriteError(w, ferr)
		return
	}
	var req broadcastRequest
	if err := fn.DecodeBody(body, &req); err != nil {
		fn.WriteError(w, fn.AsError(err))
		return
	}
	if kind, id := route(req.Topic); kind == kindUnmatched || id == 0 {
		fn.WriteError(w, fn.BadRequest("topic must be user:<id> or topic:<id>"))
		return
	}
	if req.Event == "" || strings.HasPrefix(req.Event, "phx_") {
		fn.WriteError(w, fn.BadRequest("event must be a non-empty name not starting with phx_"))
		return
	}
	if len(req.Payload) == 0 || req.Payload[0] != '{' {
		fn.WriteError(w, fn.BadRequest("payload must be a JSON object"))
		return
	}
	if err := s.Broadcast(r.Context(), req.Topic, req.Event, req.Payload); err != nil {
		s.log.Error("broadcast failed", "topic", req.Topic, "event", req.Event, "err", err)
		fn.WriteError(w, &fn.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "broadcast failed"})
		return
	}
	w.WriteHeader(http.StatusAccepted)
}
