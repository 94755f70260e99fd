package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"tidings/lib/auth"
	"tidings/lib/catalog"
)

// fnSpec is what a hostile client can get wrong about one public function.
type fnSpec struct {
	method  string
	auth    bool
	valid   map[string]any // a valid body (POST) or query (GET)
	strings []string       // its text fields
	ints    []string       // its integer fields
}

func publicSpecs(topicID int64) map[string]fnSpec {
	return map[string]fnSpec{
		"register":           {method: "POST", valid: map[string]any{"email": "new@example.test", "password": "long enough", "name": "N"}, strings: []string{"email", "password", "name"}},
		"login":              {method: "POST", valid: map[string]any{"email": "new@example.test", "password": "long enough"}, strings: []string{"email", "password"}},
		"create-topic":       {method: "POST", auth: true, valid: map[string]any{"name": "t", "description": "d"}, strings: []string{"name", "description"}},
		"subscribe":          {method: "POST", auth: true, valid: map[string]any{"topic_id": topicID}, ints: []string{"topic_id"}},
		"unsubscribe":        {method: "POST", auth: true, valid: map[string]any{"topic_id": topicID}, ints: []string{"topic_id"}},
		"ack-notification":   {method: "POST", auth: true, valid: map[string]any{"notification_id": 1}, ints: []string{"notification_id"}},
		"ack-all":            {method: "POST", auth: true, valid: map[string]any{}},
		"list-topics":        {method: "GET", auth: true},
		"get-counter":        {method: "GET", auth: true},
		"list-notifications": {method: "GET", auth: true, valid: map[string]any{"limit": 5}, ints: []string{"limit", "before"}},
		"gen-avatar":         {method: "GET", valid: map[string]any{"seed": "s", "size": 64}, strings: []string{"seed"}, ints: []string{"size"}},
		"create-api-key":     {method: "POST", auth: true, valid: map[string]any{"name": "k", "scopes": []string{"publish"}}, strings: []string{"name"}},
		"list-api-keys":      {method: "GET", auth: true},
		"revoke-api-key":     {method: "POST", auth: true, valid: map[string]any{"id": 1}, ints: []string{"id"}},
		"logout":             {method: "POST", auth: true, valid: map[string]any{}},
		"logout-all":         {method: "POST", auth: true, valid: map[string]any{}},
		"change-password":    {method: "POST", auth: true, valid: map[string]any{"current_password": "long enough", "new_password": "longer enough"}, strings: []string{"current_password", "new_password"}},
	}
}

// withField is body with field set to the raw JSON value.
func withField(valid map[string]any, field, rawValue string) string {
	parts := []string{}
	keys := make([]string, 0, len(valid))
	for k := range valid {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := rawValue
		if k != field {
			b, _ := json.Marshal(valid[k])
			v = string(b)
		}
		parts = append(parts, fmt.Sprintf("%q:%s", k, v))
	}
	if _, ok := valid[field]; !ok {
		parts = append(parts, fmt.Sprintf("%q:%s", field, rawValue))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// withQuery is the valid query with param set to the already escaped value.
func withQuery(valid map[string]any, param, escaped string) string {
	q := url.Values{}
	for k, v := range valid {
		if k != param {
			q.Set(k, fmt.Sprint(v))
		}
	}
	s := q.Encode()
	if s != "" {
		s += "&"
	}
	return s + param + "=" + escaped
}

func (e *hostileEnv) functionCases(goneTk string) []hostileCase {
	specs := publicSpecs(e.topic)
	var names []string
	for name := range specs {
		names = append(names, name)
	}
	sort.Strings(names)
	if public := catalog.Public(); strings.Join(public, ",") != strings.Join(names, ",") {
		e.t.Fatalf("the test covers %v; the public functions are %v", names, public)
	}
	var cases []hostileCase
	for _, name := range names {
		spec := specs[name]
		header := http.Header{"Content-Type": {"application/json"}}
		if spec.auth {
			header.Set("Authorization", "Bearer "+e.ownerTk)
		}
		add := func(what, method, query, body string, h http.Header) {
			path := "/function/" + name
			if query != "" {
				path += "?" + query
			}
			for _, base := range []string{"fnhost", "gateway"} {
				cases = append(cases, hostileCase{name: name + ": " + what, base: base, method: method, path: path, header: h, body: body})
			}
		}
		wrong := map[string]string{"GET": "POST", "POST": "GET"}[spec.method]
		add("wrong method "+wrong, wrong, "", "", header)
		add("method DELETE", "DELETE", "", "", header)
		if spec.auth {
			add("no token", spec.method, "", "{}", http.Header{})
			add("forged token", spec.method, "", "{}", http.Header{"Authorization": {"Bearer " + e.ownerTk + "x"}})
			add("token of a deleted user", spec.method, "", mustJSON(spec.valid), http.Header{"Authorization": {"Bearer " + goneTk}})
		}
		if spec.method == "POST" {
			valid := mustJSON(spec.valid)
			add("malformed JSON", "POST", "", `{"`, header)
			add("not an object", "POST", "", `[]`, header)
			add("null", "POST", "", `null`, header)
			add("empty body", "POST", "", ``, header)
			add("trailing data", "POST", "", valid+` junk`, header)
			add("two objects", "POST", "", valid+valid, header)
			add("unknown field", "POST", "", withField(spec.valid, "nope", "1"), header)
			add("oversized body", "POST", "", withField(spec.valid, "pad", `"`+strings.Repeat("a", 70<<10)+`"`), header)
			for _, f := range spec.strings {
				add(f+" with NUL", "POST", "", withField(spec.valid, f, `"a\u0000b"`), header)
				add(f+" invalid UTF-8", "POST", "", withField(spec.valid, f, "\"a\xff\xfeb\""), header)
				add(f+" wrong type", "POST", "", withField(spec.valid, f, `123`), header)
			}
			for _, f := range spec.ints {
				add(f+" overflowing", "POST", "", withField(spec.valid, f, `99999999999999999999`), header)
				add(f+" exponent", "POST", "", withField(spec.valid, f, `1e3`), header)
				add(f+" fraction", "POST", "", withField(spec.valid, f, `1.5`), header)
				add(f+" wrong type", "POST", "", withField(spec.valid, f, `"1"`), header)
			}
			continue
		}
		if len(spec.strings)+len(spec.ints) > 0 {
			add("malformed query", "GET", withQuery(spec.valid, "x", "%zz"), "", header)
		}
		for _, f := range spec.strings {
			add(f+" with NUL", "GET", withQuery(spec.valid, f, "a%00b"), "", header)
			add(f+" invalid UTF-8", "GET", withQuery(spec.valid, f, "a%ff%feb"), "", header)
		}
		for _, f := range spec.ints {
			for _, v := range []string{"99999999999999999999", "%2B1", "01", "1e3", "1.5", "x", "0"} {
				add(f+"="+v, "GET", withQuery(spec.valid, f, v), "", header)
			}
		}
	}
	return cases
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func (e *hostileEnv) gatewayCases() []hostileCase {
	owner := http.Header{"Authorization": {"Bearer " + e.ownerTk}, "Content-Type": {"application/json"}}
	stranger := http.Header{"Authorization": {"Bearer " + token(e.t, e.owner+1000)}, "Content-Type": {"application/json"}}
	internal := http.Header{"X-Internal-Key": {testInternalKey}}
	internal.Set(auth.InternalKeyHeader, testInternalKey)
	publish := fmt.Sprintf("/api/topics/%d/notifications", e.topic)
	var cases []hostileCase
	add := func(name, method, path, body string, h http.Header) {
		cases = append(cases, hostileCase{name: name, base: "gateway", method: method, path: path, header: h, body: body})
	}
	for _, id := range []string{"+1", "01", "1e3", "0", "-1", "99999999999999999999", "abc", "%20" + fmt.Sprint(e.topic)} {
		add("publish to topic id "+id, "POST", "/api/topics/"+id+"/notifications", `{"title":"t"}`, owner)
	}
	for what, body := range map[string]string{
		"malformed JSON":      `{"title":`,
		"trailing data":       `{"title":"a"} junk`,
		"two objects":         `{"title":"a"}{"title":"b"}`,
		"title with NUL":      `{"title":"x\u0000"}`,
		"body with NUL":       `{"title":"x","body":"\u0000"}`,
		"title invalid UTF-8": "{\"title\":\"\xff\"}",
		"body invalid UTF-8":  "{\"title\":\"x\",\"body\":\"\xc3\x28\"}",
		"title wrong type":    `{"title":1}`,
		"email wrong type":    `{"title":"x","email":"yes"}`,
		"unknown field":       `{"title":"x","nope":1}`,
		"blank title":         `{"title":"   "}`,
		"title too long":      `{"title":"` + strings.Repeat("t", 201) + `"}`,
		"not an object":       `["title"]`,
		"oversized body":      `{"title":"x","body":"` + strings.Repeat("b", 70<<10) + `"}`,
	} {
		add("publish: "+what, "POST", publish, body, owner)
	}
	add("publish: no token", "POST", publish, `{"title":"x"}`, http.Header{})
	add("publish: not the owner", "POST", publish, `{"title":"x"}`, stranger)
	add("publish: wrong method", "GET", publish, ``, owner)
	add("jobs: malformed payload", "POST", "/api/jobs/gen-avatar", `{"seed":`, owner)
	add("jobs: NUL in payload", "POST", "/api/jobs/gen-avatar", `{"seed":"\u0000"}`, owner)
	add("jobs: invalid UTF-8 payload", "POST", "/api/jobs/gen-avatar", "{\"seed\":\"\xff\"}", owner)
	add("jobs: trailing data", "POST", "/api/jobs/gen-avatar", `{"seed":"a"} junk`, owner)
	add("jobs: not an object", "POST", "/api/jobs/gen-avatar", `[1]`, owner)
	add("jobs: no token", "POST", "/api/jobs/gen-avatar", `{"seed":"a"}`, http.Header{})
	add("jobs: internal function", "POST", "/api/jobs/notify-prepare", `{}`, owner)
	add("jobs: unknown job", "GET", "/api/jobs/nope", ``, owner)
	add("jobs: wrong method", "PUT", "/api/jobs/gen-avatar", `{}`, owner)
	add("broadcast: no key", "POST", "/internal/broadcast", `{"topic":"user:1","event":"x","payload":{}}`, http.Header{})
	add("broadcast: NUL", "POST", "/internal/broadcast", `{"topic":"user:1","event":"x\u0000","payload":{}}`, internal)
	add("broadcast: trailing data", "POST", "/internal/broadcast", `{"topic":"user:1","event":"x","payload":{}} x`, internal)
	add("broadcast: topic user:01", "POST", "/internal/broadcast", `{"topic":"user:01","event":"x","payload":{}}`, internal)
	add("socket: wrong method", "POST", "/socket/websocket?vsn=2.0.0&token="+e.ownerTk, ``, http.Header{})
	add("socket: no token", "GET", "/socket/websocket?vsn=2.0.0", ``, http.Header{})
	add("socket: not an upgrade", "GET", "/socket/websocket?vsn=2.0.0&token="+e.ownerTk, ``, http.Header{})
	add("socket: bad upgrade version", "GET", "/socket/websocket?vsn=2.0.0&token="+e.ownerTk, ``, http.Header{
		"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"7"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}})
	add("unknown path", "GET", "/nope", ``, http.Header{})
	add("unknown function", "POST", "/function/nope", `{}`, http.Header{})
	add("internal function passed through", "POST", "/function/notify-prepare", `{}`, internal)
	add("healthz wrong method", "POST", "/healthz", ``, http.Header{})
	add("metrics wrong method", "DELETE", "/metrics", ``, http.Header{})
	add("status wrong method", "POST", "/api/status", ``, http.Header{})
	for _, base := range []string{"gateway", "fnhost"} {
		cases = append(cases,
			hostileCase{name: "oversized headers", base: base, raw: "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("h", 1100<<10) + "\r\n\r\n"},
			hostileCase{name: "malformed request line", base: base, raw: "GARBAGE\r\n\r\n"},
			hostileCase{name: "unknown transfer encoding", base: base, raw: "POST /function/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: zip\r\n\r\n", status: http.StatusNotImplemented},
		)
	}
	cases = append(cases,
		hostileCase{name: "fnhost: unknown path", base: "fnhost", method: "GET", path: "/nope"},
		hostileCase{name: "fnhost: unknown function", base: "fnhost", method: "POST", path: "/function/nope", body: "{}"},
		hostileCase{name: "fnhost: healthz wrong method", base: "fnhost", method: "POST", path: "/healthz"},
		hostileCase{name: "fnhost: unknown function status", base: "fnhost", method: "GET", path: "/system/function/nope"},
		hostileCase{name: "fnhost: internal function without the key", base: "fnhost", method: "POST", path: "/function/notify-prepare", body: "{}"},
	)
	return cases
}
