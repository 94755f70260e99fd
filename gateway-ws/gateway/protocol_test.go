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

// FuzzDecode feeds every frame decoder (V2 text, V1 objects, V2 binary
// pushes) arbitrary bytes: none may panic, and whatever one accepts must
// survive its encode/decode round trip.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`["1","1","user:1","phx_join",{}]`,
		`[null,"2","phoenix","heartbeat",{}]`,
		`["1","3","topic:2","publish",{"title":"t","body":"b"}]`,
		`[null,null,"t","e",null,1,2]`,
		`[1.5e3,{"a":[]},"\u00e9\ud800","e",[]]`,
		`{"topic":"user:1","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}`,
		`{"topic":"phoenix","event":"heartbeat","payload":null,"ref":null}`,
		string(binaryPushFrame("1", "2", "topic:3", "publish", []byte{0, 255})),
		string(binaryPushFrame("", "", "", "", nil)),
		"\x00\x05\x01", "\x01\x00\x00\x00\x00",
		`not json`, `[`, `[]`, `{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if m, err := Decode(data); err == nil {
			again, err := Decode(m.Encode())
			if err != nil {
				t.Fatalf("re-decoding %q (from %q): %v", m.Encode(), data, err)
			}
			if again.Topic != m.Topic || again.Event != m.Event ||
				!bytes.Equal(again.JoinRef, m.JoinRef) || !bytes.Equal(again.Ref, m.Ref) ||
				!bytes.Equal(again.Payload, m.Payload) {
				t.Fatalf("round trip changed %+v into %+v", m, again)
			}
		} else if !errors.Is(err, ErrBadFrame) {
			t.Fatalf("Decode error %v does not wrap ErrBadFrame", err)
		}
		if m, err := DecodeV1(data); err == nil {
			// EncodeV1 leaves join_ref out, as Phoenix's V1 serializer does.
			again, err := DecodeV1(m.EncodeV1())
			if err != nil {
				t.Fatalf("re-decoding V1 %q (from %q): %v", m.EncodeV1(), data, err)
			}
			if again.Topic != m.Topic || again.Event != m.Event || !bytes.Equal(again.Ref, m.Ref) ||
				!bytes.Equal(again.Payload, m.Payload) {
				t.Fatalf("V1 round trip changed %+v into %+v", m, again)
			}
		} else if !errors.Is(err, ErrBadFrame) {
			t.Fatalf("DecodeV1 error %v does not wrap ErrBadFrame", err)
		}
		if m, err := DecodeBinary(data); err == nil {
			var refs [2]string
			for i, raw := range []json.RawMessage{m.JoinRef, m.Ref} {
				if err := json.Unmarshal(raw, &refs[i]); err != nil {
					t.Fatalf("DecodeBinary gave ref %s that is not a JSON string", raw)
				}
			}
			frame := binaryPushFrame(refs[0], refs[1], m.Topic, m.Event, m.Binary)
			if !bytes.Equal(frame, data) {
				t.Fatalf("binary round trip of %q gave %q", data, frame)
			}
		} else if !errors.Is(err, ErrBadFrame) {
			t.Fatalf("DecodeBinary error %v does not wrap ErrBadFrame", err)
		}
	})
}
