package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The serializers a socket may choose with its vsn parameter, as Phoenix
// serves them (lib/phoenix/socket/serializers/v1_json_serializer.ex and
// v2_json_serializer.ex):
//
//   - V2 (vsn=2.x, and a socket that names none): text frames are the JSON
//     arrays of protocol.go; binary frames are V2 binary pushes (kind 0).
//   - V1 (vsn=1.x): text frames are JSON objects
//     {"topic","event","payload","ref","join_ref"?}; the gateway answers
//     objects {"topic","event","payload","ref"}, without join_ref, as
//     Phoenix's V1 serializer does.
//
// Everything the gateway sends is built once as a V2 text frame (replies,
// phx_close, and the broadcasts the hub hands to every member of a topic
// alike): a V2 socket sends those bytes as they are, so a broadcast is
// still encoded once for all of its V2 members; a V1 socket re-encodes
// each frame as an object (serializer.encode).
//
// No tidings event sends a binary payload, so the gateway never writes
// binary frames; a binary push (payload {:binary, data} in Phoenix) is
// answered with the error reply ReasonBinaryPayload by whatever takes it.
type serializer interface {
	// decode parses one frame from the client; binary says it came as a
	// binary frame (a WebSocket binary message, or a base64 line of a
	// long-poll batch).
	decode(data []byte, binary bool) (Message, error)
	// encode turns a V2 text frame of the gateway's into this format.
	encode(v2frame []byte) []byte
}

// Serializer versions.
const (
	vsnV1 = "1."
	vsnV2 = "2."
)

// serializerFor picks the serializer of a vsn parameter: "1.x" is V1,
// "2.x" or none V2 (Phoenix defaults a missing vsn to 1.0.0, but every
// phoenix.js sends it and tidings' own clients have always meant V2).
func serializerFor(vsn string) (serializer, bool) {
	switch {
	case vsn == "" || strings.HasPrefix(vsn, vsnV2):
		return v2JSON{}, true
	case strings.HasPrefix(vsn, vsnV1):
		return v1JSON{}, true
	default:
		return nil, false
	}
}

// ErrBinaryUnsupported is a binary frame on a socket whose serializer has
// none (V1); the socket is closed with 1003, as before V2 binary frames.
var ErrBinaryUnsupported = errors.New("binary frames are not supported by this serializer")

// ReasonBinaryPayload is the error reply to a client event whose payload
// is binary: no tidings event takes one. The socket stays open.
const ReasonBinaryPayload = "binary payload not supported"

type v2JSON struct{}

func (v2JSON) decode(data []byte, binary bool) (Message, error) {
	if binary {
		return DecodeBinary(data)
	}
	return Decode(data)
}

func (v2JSON) encode(v2frame []byte) []byte { return v2frame }

type v1JSON struct{}

func (v1JSON) decode(data []byte, binary bool) (Message, error) {
	if binary {
		return Message{}, ErrBinaryUnsupported
	}
	return DecodeV1(data)
}

func (v1JSON) encode(v2frame []byte) []byte {
	m, err := Decode(v2frame)
	if err != nil {
		// The gateway's own frames always decode; a failure is a bug,
		// sent as it is rather than dropped.
		return v2frame
	}
	return m.EncodeV1()
}

// binaryPush is the kind of a client's V2 binary frame (replies are 1 and
// broadcasts 2, which the gateway never sends).
const binaryPush = 0

// DecodeBinary parses a V2 binary push, Phoenix's layout:
//
//	kind=0 (1 byte), join_ref size, ref size, topic size, event size
//	(1 byte each), join_ref, ref, topic, event, then the payload bytes.
//
// The payload is Message.Binary (never nil); join_ref and ref become JSON
// strings, so replies echo them as text frames do. Any other kind, sizes
// past the frame's end, or fields that are not UTF-8 are ErrBadFrame.
func DecodeBinary(data []byte) (Message, error) {
	const header = 5
	if len(data) < header {
		return Message{}, fmt.Errorf("%w: binary frame of %d bytes, want at least %d", ErrBadFrame, len(data), header)
	}
	if data[0] != binaryPush {
		return Message{}, fmt.Errorf("%w: binary frame of kind %d, want a push (%d)", ErrBadFrame, data[0], binaryPush)
	}
	fields := make([]string, 4)
	off := header
	for i := range fields {
		n := int(data[1+i])
		if off+n > len(data) {
			return Message{}, fmt.Errorf("%w: binary frame field %d runs past its end", ErrBadFrame, i)
		}
		f := data[off : off+n]
		if !utf8.Valid(f) {
			return Message{}, fmt.Errorf("%w: binary frame field %d is not UTF-8", ErrBadFrame, i)
		}
		fields[i] = string(f)
		off += n
	}
	return Message{
		JoinRef: jsonString(fields[0]),
		Ref:     jsonString(fields[1]),
		Topic:   fields[2],
		Event:   fields[3],
		Binary:  append([]byte{}, data[off:]...),
	}, nil
}

// DecodeV1 parses a V1 text frame: a JSON object with the keys topic and
// event (strings), payload and ref (any value, null included), and
// optionally join_ref; other keys are ignored, as Phoenix's
// Message.from_map! ignores them.
func DecodeV1(data []byte) (Message, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		return Message{}, fmt.Errorf("%w: not a JSON object", ErrBadFrame)
	}
	for _, key := range []string{"topic", "event", "payload", "ref"} {
		if _, ok := obj[key]; !ok {
			return Message{}, fmt.Errorf("%w: missing key %q", ErrBadFrame, key)
		}
	}
	var m Message
	if err := json.Unmarshal(obj["topic"], &m.Topic); err != nil || isNull(obj["topic"]) {
		return Message{}, fmt.Errorf("%w: topic is not a string", ErrBadFrame)
	}
	if err := json.Unmarshal(obj["event"], &m.Event); err != nil || isNull(obj["event"]) {
		return Message{}, fmt.Errorf("%w: event is not a string", ErrBadFrame)
	}
	m.Payload = obj["payload"]
	m.Ref = nullable(obj["ref"])
	m.JoinRef = nullable(obj["join_ref"])
	return m, nil
}

// EncodeV1 returns m as a V1 frame, {"topic","event","payload","ref"}: like
// Phoenix's V1 serializer it leaves join_ref out.
func (m Message) EncodeV1() []byte {
	var b bytes.Buffer
	b.Grow(48 + len(m.Topic) + len(m.Event) + len(m.Payload))
	b.WriteString(`{"topic":`)
	writeString(&b, m.Topic)
	b.WriteString(`,"event":`)
	writeString(&b, m.Event)
	b.WriteString(`,"payload":`)
	if len(m.Payload) == 0 {
		b.WriteString("{}")
	} else {
		b.Write(m.Payload)
	}
	b.WriteString(`,"ref":`)
	writeRaw(&b, m.Ref)
	b.WriteByte('}')
	return b.Bytes()
}

func jsonString(s string) json.RawMessage {
	enc, _ := json.Marshal(s) // a string always encodes
	return enc
}
