package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Phoenix Channels V2 events the gateway speaks.
const (
	EventJoin      = "phx_join"
	EventLeave     = "phx_leave"
	EventReply     = "phx_reply"
	EventError     = "phx_error"
	EventClose     = "phx_close"
	EventHeartbeat = "heartbeat"

	// TopicPhoenix carries the socket's own traffic (heartbeats).
	TopicPhoenix = "phoenix"
)

// Message is one Phoenix Channels V2 frame:
// [join_ref, ref, topic, event, payload].
//
// JoinRef and Ref are kept as the raw JSON the client sent (phoenix.js sends
// strings, other clients may send numbers) so that replies echo them
// byte for byte; nil means null.
type Message struct {
	JoinRef json.RawMessage
	Ref     json.RawMessage
	Topic   string
	Event   string
	Payload json.RawMessage
	// Binary is the payload of a V2 binary push (DecodeBinary), in place
	// of Payload; nil for every text frame.
	Binary []byte
}

// ErrBadFrame is a text frame that is not a V2 message. Phoenix's V2
// serializer raises on such a frame, which ends the socket; the gateway
// closes the connection the same way.
var ErrBadFrame = errors.New("bad frame")

// Decode parses a text frame. Like Phoenix's V2 serializer it needs a JSON
// array of at least five elements and ignores any beyond the fifth; topic
// and event must be strings, since nothing can route on anything else.
func Decode(data []byte) (Message, error) {
	var parts []json.RawMessage
	if err := json.Unmarshal(data, &parts); err != nil {
		return Message{}, fmt.Errorf("%w: not a JSON array: %v", ErrBadFrame, err)
	}
	if len(parts) < 5 {
		return Message{}, fmt.Errorf("%w: %d elements, want 5", ErrBadFrame, len(parts))
	}
	var m Message
	if err := json.Unmarshal(parts[2], &m.Topic); err != nil || isNull(parts[2]) {
		return Message{}, fmt.Errorf("%w: topic is not a string", ErrBadFrame)
	}
	if err := json.Unmarshal(parts[3], &m.Event); err != nil || isNull(parts[3]) {
		return Message{}, fmt.Errorf("%w: event is not a string", ErrBadFrame)
	}
	m.JoinRef = nullable(parts[0])
	m.Ref = nullable(parts[1])
	m.Payload = parts[4]
	return m, nil
}

// Encode returns the frame for m.
func (m Message) Encode() []byte {
	var b bytes.Buffer
	b.Grow(32 + len(m.Topic) + len(m.Event) + len(m.Payload))
	b.WriteByte('[')
	writeRaw(&b, m.JoinRef)
	b.WriteByte(',')
	writeRaw(&b, m.Ref)
	b.WriteByte(',')
	writeString(&b, m.Topic)
	b.WriteByte(',')
	writeString(&b, m.Event)
	b.WriteByte(',')
	if len(m.Payload) == 0 {
		b.WriteString("{}")
	} else {
		b.Write(m.Payload)
	}
	b.WriteByte(']')
	return b.Bytes()
}

// Reply statuses.
const (
	StatusOK    = "ok"
	StatusError = "error"
)

// reply is the payload of a phx_reply.
type reply struct {
	Status   string `json:"status"`
	Response any    `json:"response"`
}

// Reason is the response of an error reply, as Phoenix channels write it.
type Reason struct {
	Reason string `json:"reason"`
}

// RateLimited is the response of an error reply to a client over a rate:
// {"reason":"rate_limited","retry_after":<seconds>}.
type RateLimited struct {
	Reason     string `json:"reason"`
	RetryAfter int    `json:"retry_after"`
}

// Reasons the gateway answers with.
const (
	ReasonUnmatchedTopic = "unmatched topic" // Phoenix's own answer for a topic not joined
	ReasonUnauthorized   = "unauthorized"
	ReasonUnknownEvent   = "unknown event"
	ReasonRateLimited    = "rate_limited" // with RateLimited's retry_after
	ReasonUnavailable    = "unavailable"
	ReasonInvalidTopic   = "invalid topic"
)

// replyFrame encodes a phx_reply to a message.
func replyFrame(joinRef, ref json.RawMessage, topic, status string, response any) []byte {
	if response == nil {
		response = struct{}{}
	}
	payload, err := json.Marshal(reply{Status: status, Response: response})
	if err != nil {
		// Responses are the gateway's own values; failing to encode one is
		// a bug, answered like a crashed Phoenix channel would be.
		payload = []byte(`{"status":"error","response":{"reason":"internal"}}`)
	}
	return Message{JoinRef: joinRef, Ref: ref, Topic: topic, Event: EventReply, Payload: payload}.Encode()
}

// BroadcastFrame encodes a server push to every member of topic. Like
// Phoenix's fastlane broadcasts it carries no join_ref and no ref, so the
// same bytes go to every subscriber.
func BroadcastFrame(topic, event string, payload any) ([]byte, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode %s payload for %s: %w", event, topic, err)
	}
	return Message{Topic: topic, Event: event, Payload: raw}.Encode(), nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(raw, []byte("null")) }

func nullable(raw json.RawMessage) json.RawMessage {
	if isNull(raw) {
		return nil
	}
	return raw
}

func writeRaw(b *bytes.Buffer, raw json.RawMessage) {
	if len(raw) == 0 {
		b.WriteString("null")
		return
	}
	b.Write(raw)
}

func writeString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s) // a string always encodes
	b.Write(enc)
}
