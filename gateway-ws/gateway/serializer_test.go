package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"tidings/lib/testenv"
)

// binaryPushFrame builds a V2 binary push as phoenix.js's serializer
// (binaryEncode) does.
func binaryPushFrame(joinRef, ref, topic, event string, payload []byte) []byte {
	out := []byte{binaryPush, byte(len(joinRef)), byte(len(ref)), byte(len(topic)), byte(len(event))}
	out = append(out, joinRef...)
	out = append(out, ref...)
	out = append(out, topic...)
	out = append(out, event...)
	return append(out, payload...)
}

func TestDecodeBinaryReadsPhoenixPushLayout(t *testing.T) {
	m, err := DecodeBinary(binaryPushFrame("3", "12", "topic:9", "publish", []byte{0, 1, 2, 255}))
	if err != nil {
		t.Fatalf("DecodeBinary: %v", err)
	}
	got := []string{string(m.JoinRef), string(m.Ref), m.Topic, m.Event, fmt.Sprint(m.Binary), string(m.Payload)}
	want := []string{`"3"`, `"12"`, "topic:9", "publish", "[0 1 2 255]", ""}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d = %q, want %q", i, got[i], want[i])
		}
	}
	// An empty payload is still a binary one.
	m, err = DecodeBinary(binaryPushFrame("", "", "t", "e", nil))
	if err != nil || m.Binary == nil || string(m.JoinRef) != `""` {
		t.Fatalf("DecodeBinary of an empty push = %+v, %v; want a non-nil empty Binary and join_ref \"\"", m, err)
	}
}

func TestDecodeBinaryRejectsWhatIsNotAPush(t *testing.T) {
	for name, frame := range map[string][]byte{
		"empty":            {},
		"short header":     {0, 1, 1},
		"reply kind":       {binaryReply, 0, 0, 0, 0},
		"broadcast kind":   {2, 0, 0, 0},
		"fields past end":  {0, 1, 1, 7, 9, 'a', 'b'},
		"topic not UTF-8":  binaryPushFrame("1", "1", "\xff\xfe", "e", nil),
		"event not UTF-8":  binaryPushFrame("1", "1", "t", "\xc3", nil),
		"join_ref not UTF": binaryPushFrame("\x80", "1", "t", "e", nil),
	} {
		if _, err := DecodeBinary(frame); !errors.Is(err, ErrBadFrame) {
			t.Errorf("%s: DecodeBinary error = %v, want ErrBadFrame", name, err)
		}
	}
}

const binaryReply = 1 // a server's reply kind, which a client never sends

func TestDecodeV1AcceptsPhoenixV1Objects(t *testing.T) {
	cases := []struct {
		frame                          string
		joinRef, ref, topic, event, pl string
	}{
		{`{"topic":"user:7","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}`, `"1"`, `"1"`, "user:7", "phx_join", `{}`},
		// join_ref is optional; ref may be null; other keys are ignored.
		{`{"topic":"phoenix","event":"heartbeat","payload":{},"ref":null,"extra":[1]}`, ``, ``, "phoenix", "heartbeat", `{}`},
		{`{"ref":5,"payload":{"title":"t"},"event":"publish","topic":"topic:1","join_ref":null}`, ``, `5`, "topic:1", "publish", `{"title":"t"}`},
	}
	for _, c := range cases {
		m, err := DecodeV1([]byte(c.frame))
		if err != nil {
			t.Errorf("DecodeV1(%s): %v", c.frame, err)
			continue
		}
		got := []string{string(m.JoinRef), string(m.Ref), m.Topic, m.Event, string(m.Payload)}
		want := []string{c.joinRef, c.ref, c.topic, c.event, c.pl}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("DecodeV1(%s) field %d = %q, want %q", c.frame, i, got[i], want[i])
			}
		}
	}
}

func TestDecodeV1RejectsWhatPhoenixRaisesOn(t *testing.T) {
	for _, frame := range []string{
		``, `null`, `[]`, `["1","1","phoenix","heartbeat",{}]`, `"x"`,
		`{"topic":"phoenix","event":"heartbeat","payload":{}}`, // no ref
		`{"topic":"phoenix","event":"heartbeat","ref":"1"}`,    // no payload
		`{"event":"heartbeat","payload":{},"ref":"1"}`,         // no topic
		`{"topic":null,"event":"heartbeat","payload":{},"ref":"1"}`,
		`{"topic":"phoenix","event":7,"payload":{},"ref":"1"}`,
		`{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"`,
	} {
		if _, err := DecodeV1([]byte(frame)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("DecodeV1(%q) error = %v, want ErrBadFrame", frame, err)
		}
	}
}

func TestV1SerializerReencodesTheGatewaysFramesAsObjects(t *testing.T) {
	ser, ok := serializerFor("1.0.0")
	if !ok {
		t.Fatal("vsn 1.0.0 has no serializer")
	}
	frame, err := BroadcastFrame("user:3", "counter", map[string]int{"unread": 2})
	if err != nil {
		t.Fatal(err)
	}
	// Like Phoenix's V1 serializer: topic, event, payload, ref; no join_ref.
	if got, want := string(ser.encode(frame)), `{"topic":"user:3","event":"counter","payload":{"unread":2},"ref":null}`; got != want {
		t.Errorf("V1 broadcast = %s, want %s", got, want)
	}
	reply := replyFrame(json.RawMessage(`"1"`), json.RawMessage(`"2"`), "user:3", StatusOK, nil)
	if got, want := string(ser.encode(reply)), `{"topic":"user:3","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"2"}`; got != want {
		t.Errorf("V1 reply = %s, want %s", got, want)
	}
	// V2 sends the shared bytes themselves: nothing is encoded per socket.
	v2, _ := serializerFor("2.0.0")
	if got := v2.encode(frame); &got[0] != &frame[0] {
		t.Error("V2 serializer copied a broadcast frame; it must send the shared bytes")
	}
	if _, ok := serializerFor("3.0.0"); ok {
		t.Error("vsn 3.0.0 has a serializer; it must be refused")
	}
}

func TestBinaryPushGetsAnErrorReplyAndTheSocketStaysOpen(t *testing.T) {
	g := startGateway(t, testConfig(testenv.NewRedis(t), testenv.AdminURL()))
	c := dial(t, g, 31)
	jr := c.mustJoin("user:31")
	send := func(frame []byte) {
		t.Helper()
		if err := c.ws.WriteMessage(websocket.BinaryMessage, frame); err != nil {
			t.Fatal(err)
		}
	}
	send(binaryPushFrame(jr, "20", "user:31", "publish", []byte{1, 2, 3}))
	c.expect(fmt.Sprintf(`[%q,"20","user:31","phx_reply",{"status":"error","response":{"reason":%q}}]`, jr, ReasonBinaryPayload))
	// A binary join joins nothing.
	send(binaryPushFrame("21", "21", "user:31", EventJoin, []byte("{}")))
	c.expect(fmt.Sprintf(`["21","21","user:31","phx_reply",{"status":"error","response":{"reason":%q}}]`, ReasonBinaryPayload))
	// A binary heartbeat is a heartbeat, as in Phoenix.
	send(binaryPushFrame("", "22", TopicPhoenix, EventHeartbeat, nil))
	c.expect(`[null,"22","phoenix","phx_reply",{"status":"ok","response":{}}]`)
	// The first join still holds.
	if err := g.srv.Broadcast(context.Background(), "user:31", "counter", map[string]int{"unread": 4}); err != nil {
		t.Fatal(err)
	}
	c.expect(`[null,null,"user:31","counter",{"unread":4}]`)
	c.heartbeat()
}

func TestV1SocketJoinsAndReceivesObjects(t *testing.T) {
	g := startGateway(t, testConfig(testenv.NewRedis(t), testenv.AdminURL()))
	url := strings.Replace(g.socketURL(token(t, 32)), "vsn=2.0.0", "vsn=1.0.0", 1)
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial V1: %v", err)
	}
	defer ws.Close()
	c := &client{t: t, ws: ws}
	c.sendRaw(`{"topic":"user:32","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}`)
	c.expectText(`{"topic":"user:32","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"1"}`)
	if err := g.srv.Broadcast(context.Background(), "user:32", "notification", map[string]any{"id": 1, "title": "hi"}); err != nil {
		t.Fatal(err)
	}
	c.expectText(`{"topic":"user:32","event":"notification","payload":{"id":1,"title":"hi"},"ref":null}`)
	c.sendRaw(`{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"2"}`)
	c.expectText(`{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":"2"}`)
	c.sendRaw(`{"topic":"user:33","event":"phx_join","payload":{},"ref":"3","join_ref":"3"}`)
	c.expectText(`{"topic":"user:33","event":"phx_reply","payload":{"status":"error","response":{"reason":"unauthorized"}},"ref":"3"}`)
	// A V2 array is not a V1 frame: Phoenix's V1 serializer raises on it.
	c.sendRaw(`[null,"4","phoenix","heartbeat",{}]`)
	if ce := c.expectClose(3); ce.Code != websocket.CloseInvalidFramePayloadData {
		t.Errorf("V2 frame on a V1 socket: closed with %d, want %d", ce.Code, websocket.CloseInvalidFramePayloadData)
	}

	// V1 has no binary frames: closed with 1003, as before they existed.
	ws2, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws2.Close()
	c2 := &client{t: t, ws: ws2}
	if err := ws2.WriteMessage(websocket.BinaryMessage, binaryPushFrame("", "1", "phoenix", "heartbeat", nil)); err != nil {
		t.Fatal(err)
	}
	if ce := c2.expectClose(3); ce.Code != websocket.CloseUnsupportedData {
		t.Errorf("binary frame on a V1 socket: closed with %d, want %d", ce.Code, websocket.CloseUnsupportedData)
	}
}

// expectText reads the next frame and compares its text with want.
func (c *client) expectText(want string) {
	c.t.Helper()
	_ = c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	if string(data) != want {
		c.t.Fatalf("got frame\n  %s\nwant\n  %s", data, want)
	}
}
