package fn

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// DecodeJSON decodes the request body into v, refusing malformed JSON,
// unknown fields and trailing data with a 400.
func DecodeJSON(req Request, v any) error {
	if len(bytes.TrimSpace(req.Body)) == 0 {
		return BadRequest("request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(req.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return BadRequest("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return BadRequest("malformed JSON: trailing data after the object")
	}
	return nil
}

// JSON answers status with v encoded as JSON.
func JSON(status int, v any) (Response, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return Response{}, err
	}
	return Response{
		StatusCode: status,
		Body:       body,
		Header:     http.Header{"Content-Type": {"application/json"}},
	}, nil
}

// ErrorResponse renders e in the public error shape.
func ErrorResponse(e *Error) Response {
	body, _ := json.Marshal(struct {
		Error *Error `json:"error"`
	}{e})
	return Response{
		StatusCode: e.Status,
		Body:       body,
		Header:     http.Header{"Content-Type": {"application/json"}},
	}
}
