package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

func TestDecodeAcceptsV2Frames(t *testing.T) {
	cases := []struct {
		frame                          string
		joinRef, ref, topic, event, pl string
	}{
		{`["1","2","user:7","phx_join",{}]`, `"1"`, `"2"`, "user:7", "phx_join", `{}`},
		{`[null,"3","phoenix","heartbeat",{}]`, ``, `"3"`, "phoenix", "heartbeat", `{}`},
		{`[ 4 , 5 , "topic:1" , "publish" , {"title":"a b"} ]`, `4`, `5`, "topic:1", "publish", `{"title":"a b"}`},
		// Phoenix's serializer ignores elements past the fifth.
		{`[null,null,"t","e",[1,2],"extra"]`, ``, ``, "t", "e", `[1,2]`},
	}
	for _, c := range cases {
		m, err := Decode([]byte(c.frame))
		if err != nil {
			t.Errorf("Decode(%s): unexpected error %v", c.frame, err)
			continue
		}
		got := []string{string(m.JoinRef), string(m.Ref), m.Topic, m.Event, string(m.Payload)}
		want := []string{c.joinRef, c.ref, c.topic, c.event, c.pl}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("Decode(%s) field %d = %q, want %q", c.frame, i, got[i], want[i])
			}
		}
	}
}

func TestDecodeRejectsWhatPhoenixCannotRoute(t *testing.T) {
	for _, frame := range []string{
		``, `not json`, `{"topic":"x"}`, `"str"`, `[]`,
		`["1","1","phoenix","heartbeat"]`, // four elements
		`[null,null,5,"heartbeat",{}]`,    // topic not a string
		`[null,null,"phoenix",null,{}]`,   // event not a string
		`[null,null,null,"heartbeat",{}]`,
		`["1","1","t","e",{}`, // truncated
	} {
		if _, err := Decode([]byte(frame)); !errors.Is(err, ErrBadFrame) {
			t.Errorf("Decode(%q) error = %v, want ErrBadFrame", frame, err)
		}
	}
}

func TestEncodeWritesV2ArrayWithNulls(t *testing.T) {
	got := string(Message{Topic: "user:1", Event: "phx_close"}.Encode())
	want := `[null,null,"user:1","phx_close",{}]`
	if got != want {
		t.Fatalf("Encode = %s, want %s", got, want)
	}
	got = string(replyFrame(json.RawMessage(`"1"`), json.RawMessage(`"2"`), "topic:9", StatusError, Reason{ReasonUnauthorized}))
	want = `["1","2","topic:9","phx_reply",{"status":"error","response":{"reason":"unauthorized"}}]`
	if got != want {
		t.Fatalf("replyFrame = %s, want %s", got, want)
	}
}

// FuzzDecode feeds the frame decoder arbitrary bytes: it must never panic,
// and whatever it accepts must survive an encode/decode round trip.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`["1","1","user:1","phx_join",{}]`,
		`[null,"2","phoenix","heartbeat",{}]`,
		`["1","3","topic:2","publish",{"title":"t","body":"b"}]`,
		`[null,null,"t","e",null,1,2]`,
		`[1.5e3,{"a":[]},"\u00e9\ud800","e",[]]`,
		`not json`, `[`, `[]`, `{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("Decode error %v does not wrap ErrBadFrame", err)
			}
			return
		}
		again, err := Decode(m.Encode())
		if err != nil {
			t.Fatalf("re-decoding %q (from %q): %v", m.Encode(), data, err)
		}
		if again.Topic != m.Topic || again.Event != m.Event ||
			!bytes.Equal(again.JoinRef, m.JoinRef) || !bytes.Equal(again.Ref, m.Ref) ||
			!bytes.Equal(again.Payload, m.Payload) {
			t.Fatalf("round trip changed %+v into %+v", m, again)
		}
	})
}
