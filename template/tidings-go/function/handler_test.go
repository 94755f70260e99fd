package function

import (
	"net/http"
	"testing"

	"tidings/lib/fn"
)

func TestHandleGreetsByNameAndRefusesNoName(t *testing.T) {
	h := New()
	resp, err := h.Handle(fn.Request{Method: http.MethodPost, Body: []byte(`{"name":"Ada"}`)})
	if err != nil || resp.StatusCode != http.StatusOK || string(resp.Body) != `{"greeting":"Hello, Ada"}` {
		t.Errorf("greeting: %d %s (%v)", resp.StatusCode, resp.Body, err)
	}
	_, err = h.Handle(fn.Request{Method: http.MethodPost, Body: []byte(`{}`)})
	if e := fn.AsError(err); e == nil || e.Status != http.StatusBadRequest {
		t.Errorf("no name: %v, want a 400", err)
	}
}
