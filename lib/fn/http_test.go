package fn

import (
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestWriteJSONAnswersTheValueOrA500InTheErrorShape: a value is written
// with its status and content type; one that cannot be encoded is the
// internal error, never half a body.
func TestWriteJSONAnswersTheValueOrA500InTheErrorShape(t *testing.T) {
	w := httptest.NewRecorder()
	WriteJSON(w, http.StatusAccepted, map[string]string{"id": "x"})
	if w.Code != http.StatusAccepted || w.Header().Get("Content-Type") != "application/json" || w.Body.String() != `{"id":"x"}` {
		t.Fatalf("got %d %q %s, want 202 application/json {\"id\":\"x\"}", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	w = httptest.NewRecorder()
	WriteJSON(w, http.StatusOK, math.NaN())
	if w.Code != http.StatusInternalServerError || w.Body.String() != `{"error":{"code":"internal","message":"internal error"}}` {
		t.Fatalf("unencodable value: got %d %s, want 500 in the error shape", w.Code, w.Body)
	}
}

// TestSharedErrorsCannotBeChangedByACaller: the shared answers are
// constructors, so a caller that changes the one it got changes nobody
// else's.
func TestSharedErrorsCannotBeChangedByACaller(t *testing.T) {
	for name, ctor := range map[string]func() *Error{
		"Internal": Internal, "Busy": Busy, "Timeout": Timeout, "RequestTimeout": RequestTimeout,
	} {
		want := *ctor()
		ctor().Message = "changed by a caller"
		if got := *ctor(); got != want {
			t.Errorf("%s: after a caller changed its copy, got %+v, want %+v", name, got, want)
		}
	}
}
