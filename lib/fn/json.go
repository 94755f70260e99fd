package fn

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"
)

// DecodeJSON decodes the request body into v; see DecodeBody.
func DecodeJSON(req Request, v any) error { return DecodeBody(req.Body, v) }

// DecodeEmpty checks that the body of a POST that takes no fields is {}:
// strict JSON, as every POST of tidings, so a malformed body is a 400 and
// does nothing.
func DecodeEmpty(req Request) error {
	var none struct{}
	return DecodeJSON(req, &none)
}

// DecodeBody is the one strict JSON decoder of tidings: body must be a
// single JSON object in valid UTF-8, with no unknown fields, no NUL in any
// string (escaped as \u0000 or not), numbers that fit their fields, and
// nothing after the object. Anything else is a 400 bad_request, before the
// input gets near a database.
func DecodeBody(body []byte, v any) error {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return BadRequest("request body must be a JSON object")
	}
	if !utf8.Valid(body) {
		return BadRequest("request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return BadRequest("malformed JSON: %s", describe(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return BadRequest("malformed JSON: trailing data after the object")
	}
	return checkStrings(body)
}

// checkStrings walks a well-formed JSON document and refuses a NUL in any
// key or string: encoding/json turns \u0000 into a NUL, which PostgreSQL
// refuses in text.
func checkStrings(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return BadRequest("malformed JSON: %s", describe(err))
		}
		if s, ok := tok.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return BadRequest("strings must not contain NUL characters")
		}
	}
}

// describe words a decoding error for the client: which field had the
// wrong type or an out-of-range number, or where the syntax broke.
func describe(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		if typeErr.Value == "number" || strings.HasPrefix(typeErr.Value, "number ") {
			return fmt.Sprintf("field %q must be a %s in range", typeErr.Field, typeErr.Type)
		}
		return fmt.Sprintf("field %q must be a %s, not a %s", typeErr.Field, typeErr.Type, typeErr.Value)
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return fmt.Sprintf("%v at offset %d", syntaxErr, syntaxErr.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return err.Error()
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
