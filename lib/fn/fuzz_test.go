package fn_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"tidings/lib/fn"
)

// FuzzDecodeJSON: whatever the body, DecodeBody either refuses it with a
// 400 or yields strings PostgreSQL takes (valid UTF-8, no NUL), and never
// panics.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{`{"title":"a","body":"b","email":true}`, `{"title":"a"} junk`, `{"title":"\u0000"}`,
		"{\"title\":\"\xff\"}", `{"topic_id":9223372036854775808}`, `{"recipients":[1,2,3]}`, `{}`, `null`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var v struct {
			Title      string  `json:"title"`
			Body       string  `json:"body"`
			Email      bool    `json:"email"`
			TopicID    int64   `json:"topic_id"`
			Recipients []int64 `json:"recipients"`
		}
		err := fn.DecodeBody(body, &v)
		if err != nil {
			if e := fn.AsError(err); e == nil || e.Status != 400 {
				t.Fatalf("DecodeBody(%q) = %v, want nil or a 400", body, err)
			}
			return
		}
		for _, s := range []string{v.Title, v.Body} {
			if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
				t.Fatalf("DecodeBody(%q) let through %q", body, s)
			}
		}
		if !json.Valid(body) {
			t.Fatalf("DecodeBody accepted invalid JSON %q", body)
		}
	})
}

// FuzzParseID: an accepted id prints back as exactly its input.
func FuzzParseID(f *testing.F) {
	for _, seed := range []string{"1", "01", "+1", "1e3", "-1", "9223372036854775808"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := fn.ParseID("id", s)
		if err != nil {
			return
		}
		if id <= 0 || strings.TrimLeft(s, "0123456789") != "" || s[0] == '0' {
			t.Fatalf("ParseID(%q) = %d", s, id)
		}
	})
}
