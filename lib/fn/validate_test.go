package fn_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"tidings/lib/fn"
)

func TestDecodeBodyRefusesWhatPostgreSQLWouldRefuseAndTrailingData(t *testing.T) {
	type in struct {
		Title string   `json:"title"`
		ID    int64    `json:"id"`
		Tags  []string `json:"tags"`
	}
	bad := map[string]string{
		"trailing junk":         `{"title":"a"} junk`,
		"two objects":           `{"title":"a"}{"title":"b"}`,
		"escaped NUL":           `{"title":"x\u0000y"}`,
		"escaped NUL in a list": `{"tags":["ok","\u0000"]}`,
		"escaped NUL in a key":  `{"ti\u0000tle":"a"}`,
		"invalid UTF-8":         "{\"title\":\"\xff\xfe\"}",
		"overflowing number":    `{"id":9223372036854775808}`,
		"exponent":              `{"id":1e3}`,
		"fraction":              `{"id":1.5}`,
		"wrong type":            `{"id":"1"}`,
		"null body":             `null`,
		"array body":            `[]`,
		"empty body":            ``,
		"unknown field":         `{"nope":1}`,
		"unterminated":          `{"title":"a"`,
		"raw control character": "{\"title\":\"a\x00b\"}",
	}
	for name, body := range bad {
		var v in
		err := fn.DecodeBody([]byte(body), &v)
		if e := fn.AsError(err); e == nil || e.Status != http.StatusBadRequest || e.Code != "bad_request" {
			t.Errorf("%s: DecodeBody(%q) = %v, want a 400 bad_request", name, body, err)
		}
	}
	var v in
	if err := fn.DecodeBody([]byte(" {\"title\":\"caf\u00e9 \\\\u0000\",\"id\":42} \n"), &v); err != nil || v.ID != 42 || v.Title != `café \u0000` {
		t.Errorf("a good body (an escaped backslash before u0000 is text, not NUL): err %v, got %+v", err, v)
	}
}

func TestParseIDTakesOnlyCanonicalPositiveDecimals(t *testing.T) {
	for _, s := range []string{"", "0", "-1", "+1", "01", "1e3", "0x10", " 1", "1 ", "1.0", "9223372036854775808", "١"} {
		if id, err := fn.ParseID("id", s); err == nil {
			t.Errorf("ParseID(%q) = %d, want a 400", s, id)
		}
	}
	for s, want := range map[string]int64{"1": 1, "42": 42, "9223372036854775807": 1<<63 - 1} {
		if id, err := fn.ParseID("id", s); err != nil || id != want {
			t.Errorf("ParseID(%q) = %d, %v; want %d", s, id, err, want)
		}
	}
}

func TestQueryIntAndParseQuery(t *testing.T) {
	for _, raw := range []string{"limit=0", "limit=201", "limit=+5", "limit=05", "limit=5&limit=6", "limit=", "limit=1e1"} {
		q, _ := url.ParseQuery(raw)
		if n, err := fn.QueryInt(q, "limit", 50, 1, 200); err == nil {
			t.Errorf("QueryInt(%q) = %d, want a 400", raw, n)
		}
	}
	q, _ := url.ParseQuery("limit=7")
	if n, err := fn.QueryInt(q, "limit", 50, 1, 200); err != nil || n != 7 {
		t.Errorf("QueryInt(limit=7) = %d, %v", n, err)
	}
	if n, err := fn.QueryInt(url.Values{}, "limit", 50, 1, 200); err != nil || n != 50 {
		t.Errorf("QueryInt of an absent parameter = %d, %v; want the default", n, err)
	}
	for _, raw := range []string{"seed=a%00b", "seed=%ff", "a%00=1", "seed=%zz"} {
		if _, err := fn.ParseQuery(fn.Request{QueryString: raw}); fn.AsError(err) == nil {
			t.Errorf("ParseQuery(%q) = %v, want a 400", raw, err)
		}
	}
}

func TestCheckText(t *testing.T) {
	for _, s := range []string{"a\x00", "\xff", strings.Repeat("é", 11)} {
		if err := fn.CheckText("name", s, 10); fn.AsError(err) == nil {
			t.Errorf("CheckText(%q) = %v, want a 400", s, err)
		}
	}
	if err := fn.CheckText("name", strings.Repeat("é", 10), 10); err != nil {
		t.Errorf("10 characters within a bound of 10: %v", err)
	}
}

// rawCall writes one raw HTTP/1.1 request and returns the status line and
// the body of the answer.
func rawCall(t *testing.T, addr, request string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = io.WriteString(c, request) }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("answer %d has Content-Type %q, want application/json (body %s)", resp.StatusCode, ct, body)
	}
	return resp.StatusCode, string(body)
}

func TestServerErrorsOfNetHTTPAndTheMuxAreInTheErrorShape(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /thing/{id}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.PathValue("id"))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: fn.Routes(mux), MaxHeaderBytes: 4 << 10, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(fn.JSONErrorListener(ln)) }()
	defer srv.Shutdown(context.Background())
	addr := ln.Addr().String()
	cases := []struct {
		name    string
		request string
		status  int
		code    string
	}{
		{"unknown path", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found"},
		{"wrong method", "POST /thing/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "method_not_allowed"},
		{"oversized headers", "GET /thing/1 HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", 431, "headers_too_large"},
		{"malformed request line", "GARBAGE\r\n\r\n", 400, "bad_request"},
		{"missing Host", "GET /thing/1 HTTP/1.1\r\n\r\n", 400, "bad_request"},
		{"unknown transfer encoding", "POST /thing/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: zip\r\n\r\n", 501, "not_implemented"},
	}
	for _, c := range cases {
		status, body := rawCall(t, addr, c.request)
		if status != c.status || !strings.Contains(body, `"code":"`+c.code+`"`) {
			t.Errorf("%s: %d %s, want %d with code %s", c.name, status, body, c.status, c.code)
		}
	}
	resp, err := http.Get("http://" + addr + "/thing/7")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "7" {
		t.Errorf("a routed request: %d %q, want 200 \"7\" (path values set)", resp.StatusCode, b)
	}
}
