package fn_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"tidings/lib/fn"
)

// echo answers with the request's method, query and body, or fails as asked.
var echo = fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
	switch string(req.Body) {
	case "client-error":
		return fn.Response{}, fn.Conflict("taken")
	case "server-error":
		return fn.Response{}, errors.New("database password=hunter2 refused")
	case "panic":
		panic("boom with secret")
	}
	return fn.JSON(http.StatusOK, map[string]string{
		"method": req.Method, "query": req.QueryString, "body": string(req.Body), "x": req.Header.Get("X-Thing"),
	})
})

type answer struct {
	status      int
	contentType string
	body        string
}

func viaHTTP(t *testing.T, a *fn.Adapter, method, query, body string) answer {
	t.Helper()
	r := httptest.NewRequest(method, "/function/echo?"+query, strings.NewReader(body))
	r.Header.Set("X-Thing", "thing")
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	return answer{w.Code, w.Header().Get("Content-Type"), w.Body.String()}
}

func viaLambda(t *testing.T, a *fn.Adapter, method, query, body string) answer {
	t.Helper()
	ev := events.APIGatewayV2HTTPRequest{
		RawQueryString: query,
		Headers:        map[string]string{"x-thing": "thing"},
		Body:           body,
	}
	ev.RequestContext.HTTP.Method = method
	resp, err := a.HandleLambda(context.Background(), ev)
	if err != nil {
		t.Fatalf("lambda adapter returned an error instead of a response: %v", err)
	}
	return answer{resp.StatusCode, resp.Headers["Content-Type"], resp.Body}
}

func TestAdaptersMapErrorsToTheContractShape(t *testing.T) {
	var logs bytes.Buffer
	a := &fn.Adapter{Handler: echo, MaxBodyBytes: 32, Log: slog.New(slog.NewJSONHandler(&logs, nil))}
	cases := []struct {
		name   string
		body   string
		status int
		code   string
	}{
		{"ok", `{"a":1}`, 200, ""},
		{"client error keeps its status", "client-error", 409, "conflict"},
		{"server error is a bare 500", "server-error", 500, "internal"},
		{"panic is a bare 500", "panic", 500, "internal"},
		{"body over the limit", strings.Repeat("x", 33), 413, "too_large"},
	}
	for _, c := range cases {
		for via, call := range map[string]func(*testing.T, *fn.Adapter, string, string, string) answer{"http": viaHTTP, "lambda": viaLambda} {
			got := call(t, a, "POST", "q=1", c.body)
			if got.status != c.status {
				t.Errorf("%s via %s: status %d, want %d (body %s)", c.name, via, got.status, c.status, got.body)
			}
			if c.code == "" {
				continue
			}
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal([]byte(got.body), &e); err != nil || e.Error.Code != c.code {
				t.Errorf("%s via %s: body %s, want error code %q", c.name, via, got.body, c.code)
			}
			if strings.Contains(got.body, "hunter2") || strings.Contains(got.body, "secret") {
				t.Errorf("%s via %s: internal detail leaked to the client: %s", c.name, via, got.body)
			}
		}
	}
	if !strings.Contains(logs.String(), "boom with secret") || !strings.Contains(logs.String(), "hunter2") {
		t.Errorf("server-side failures should be logged for operators; log was %s", logs.String())
	}
}

func TestHTTPAndLambdaAdaptersPassTheSameRequest(t *testing.T) {
	a := &fn.Adapter{Handler: echo}
	h := viaHTTP(t, a, "PUT", "a=1&b=2", `{"x":true}`)
	l := viaLambda(t, a, "PUT", "a=1&b=2", `{"x":true}`)
	if h != l {
		t.Fatalf("adapters differ:\n http   %+v\n lambda %+v", h, l)
	}
	want := `{"body":"{\"x\":true}","method":"PUT","query":"a=1\u0026b=2","x":"thing"}`
	if h.body != want {
		t.Fatalf("handler saw %s, want %s", h.body, want)
	}
}

func TestLambdaAdapterEncodesBinaryBodiesAsBase64(t *testing.T) {
	png := fn.HandlerFunc(func(fn.Request) (fn.Response, error) {
		return fn.Response{Body: []byte{0x89, 'P', 'N', 'G'}, Header: http.Header{"Content-Type": {"image/png"}}}, nil
	})
	resp, err := (&fn.Adapter{Handler: png}).HandleLambda(context.Background(), events.APIGatewayV2HTTPRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.IsBase64Encoded || resp.Body != "iVBORw==" {
		t.Fatalf("binary body: base64=%v body=%q, want base64 iVBORw==", resp.IsBase64Encoded, resp.Body)
	}
}

func TestDecodeJSONRefusesMalformedBodies(t *testing.T) {
	for _, body := range []string{``, `{`, `[]`, `{"a":1} {"a":2}`, `{"unknown":1}`, `{"a":"x"}`} {
		var v struct {
			A int `json:"a"`
		}
		err := fn.DecodeJSON(fn.Request{Body: []byte(body)}, &v)
		if e := fn.AsError(err); e == nil || e.Status != 400 {
			t.Errorf("DecodeJSON(%q) = %v, want a 400", body, err)
		}
	}
	var v struct {
		A int `json:"a"`
	}
	if err := fn.DecodeJSON(fn.Request{Body: []byte(` {"a": 3} `)}, &v); err != nil || v.A != 3 {
		t.Errorf("DecodeJSON of a good body: %v, a=%d", err, v.A)
	}
}

// TestLambdaAdapterCarriesCookiesAndRepeatedHeadersLikeHTTP: a handler that
// sets two cookies (with commas in their Expires) and a repeated header
// answers the same through both adapters, in payload format 2.0's shape:
// each cookie its own entry of Cookies, never comma-joined. Request cookies
// (the event's Cookies) reach the handler as one Cookie header, and a
// request header holding a comma stays one value, as over HTTP.
func TestLambdaAdapterCarriesCookiesAndRepeatedHeadersLikeHTTP(t *testing.T) {
	cookies := []string{
		"session=abc; Path=/; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly",
		"theme=dark; Path=/; Expires=Thu, 22 Oct 2026 07:28:00 GMT",
	}
	h := fn.HandlerFunc(func(req fn.Request) (fn.Response, error) {
		resp, err := fn.JSON(http.StatusOK, map[string]any{
			"cookie": req.Header.Get("Cookie"), "if_none_match": req.Header.Values("If-None-Match"),
		})
		resp.Header["Set-Cookie"] = cookies
		resp.Header["Vary"] = []string{"Accept", "Origin"}
		return resp, err
	})
	a := &fn.Adapter{Handler: h}

	r := httptest.NewRequest("GET", "/function/f", nil)
	r.Header.Set("Cookie", "a=1; b=2")
	r.Header.Set("If-None-Match", `"x", "y"`)
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)

	ev := events.APIGatewayV2HTTPRequest{
		Cookies: []string{"a=1", "b=2"},
		Headers: map[string]string{"if-none-match": `"x", "y"`},
	}
	ev.RequestContext.HTTP.Method = "GET"
	resp, err := a.HandleLambda(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}

	if resp.Body != w.Body.String() {
		t.Errorf("the handler saw different requests:\n http   %s\n lambda %s", w.Body.String(), resp.Body)
	}
	if want := `{"cookie":"a=1; b=2","if_none_match":["\"x\", \"y\""]}`; resp.Body != want {
		t.Errorf("handler saw %s, want %s", resp.Body, want)
	}
	if strings.Join(resp.Cookies, "\n") != strings.Join(w.Result().Header.Values("Set-Cookie"), "\n") ||
		len(resp.Cookies) != len(cookies) {
		t.Errorf("cookies: lambda %q, http %q; want each of %q as its own entry", resp.Cookies, w.Result().Header.Values("Set-Cookie"), cookies)
	}
	if _, ok := resp.Headers["Set-Cookie"]; ok {
		t.Errorf("Set-Cookie must go to Cookies, not be joined in Headers: %q", resp.Headers["Set-Cookie"])
	}
	if resp.Headers["Vary"] != "Accept, Origin" {
		t.Errorf("repeated header Vary = %q, want %q (format 2.0 has no multi-value headers)", resp.Headers["Vary"], "Accept, Origin")
	}
}
