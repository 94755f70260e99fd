package jobs

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"

	"tidings/gateway-ws/invoke"
)

// request turns a job's payload into the call: for GET the payload's
// fields become the query string ({"seed":"x","size":64} → seed=x&size=64;
// a list repeats its key), for POST the payload is the JSON body.
func request(method string, payload json.RawMessage) (query string, body []byte, err error) {
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil || fields == nil || dec.More() {
		return "", nil, fmt.Errorf("%w: must be one JSON object", ErrBadPayload)
	}
	if method != http.MethodGet {
		return "", payload, nil
	}
	values := url.Values{}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		raw := bytes.TrimSpace(fields[name])
		var list []json.RawMessage
		if len(raw) > 0 && raw[0] == '[' {
			if err := json.Unmarshal(raw, &list); err != nil {
				return "", nil, fmt.Errorf("%w: field %s", ErrBadPayload, name)
			}
		} else {
			list = []json.RawMessage{raw}
		}
		for _, item := range list {
			v, ok := scalar(item)
			if !ok {
				return "", nil, fmt.Errorf("%w: field %s must be a string, number or boolean (or a list of them) for a GET function", ErrBadPayload, name)
			}
			values.Add(name, v)
		}
	}
	return values.Encode(), nil, nil
}

// scalar renders a JSON string, number or boolean as query text.
func scalar(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err == nil
	case 't', 'f':
		return string(raw), string(raw) == "true" || string(raw) == "false"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		var n json.Number
		err := json.Unmarshal(raw, &n)
		return n.String(), err == nil && n != ""
	}
	return "", false
}

// encodeResult stores a function's answer: a JSON body as it is, anything
// else (an image/png avatar) as {"content_type","body_base64"}, so a job's
// record and its events stay JSON. The type is sniffed from the body
// (net/http's DetectContentType), which tells JSON from PNG without
// trusting a header.
func encodeResult(a *invoke.Answer) json.RawMessage {
	if len(bytes.TrimSpace(a.Body)) == 0 {
		return json.RawMessage(`null`)
	}
	if json.Valid(a.Body) {
		return json.RawMessage(a.Body)
	}
	b, _ := json.Marshal(struct {
		ContentType string `json:"content_type"`
		BodyBase64  string `json:"body_base64"`
	}{http.DetectContentType(a.Body), base64.StdEncoding.EncodeToString(a.Body)})
	return b
}

// outcome is what a failed call means for its job: the error a client
// sees, and whether another attempt may succeed (invoke.Retryable).
func outcome(err error, function string, timedOut bool) (*Error, bool) {
	retry := invoke.Retryable(err)
	var ce *invoke.CallError
	switch {
	case errors.As(err, &ce):
		return &Error{Code: ce.Code, Message: ce.Message, Status: ce.Status}, retry
	case errors.Is(err, invoke.ErrOpen):
		return &Error{Code: "unavailable", Message: function + " is failing and is not being called for now"}, retry
	case errors.Is(err, invoke.ErrDown):
		return &Error{Code: "unavailable", Message: function + " is down"}, retry
	case errors.Is(err, invoke.ErrBusy), errors.Is(err, context.DeadlineExceeded), timedOut:
		return &Error{Code: "timeout", Message: function + " did not answer in time"}, retry
	}
	return &Error{Code: "unavailable", Message: function + " could not be reached"}, retry
}
