package fn_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"tidings/lib/config"
	"tidings/lib/fn"
	"tidings/lib/testenv"
)

// serve runs h on fn.NewServer with the given body deadline.
func serve(t *testing.T, h http.Handler, bodyTimeout time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config = fn.NewServer(h, config.HTTPServer{ReadBodyTimeout: bodyTimeout}, nil)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// TestBodyNotSentInTimeGets408 drips a body to a handler that reads it:
// it is cut at the body deadline with 408 in the JSON error shape. A
// handler that never reads its body must still answer (its connection is
// not held open).
func TestBodyNotSentInTimeGets408(t *testing.T) {
	const bodyTimeout = 300 * time.Millisecond
	mux := http.NewServeMux()
	mux.HandleFunc("/reads", func(w http.ResponseWriter, r *http.Request) {
		if _, ferr := fn.ReadBody(w, r, 4096); ferr != nil {
			fn.WriteError(w, ferr)
		}
	})
	mux.HandleFunc("/ignores", func(w http.ResponseWriter, r *http.Request) {})
	srv := serve(t, mux, bodyTimeout)
	addr := srv.Listener.Addr().String()

	reader := testenv.Drip(t, addr, "POST", "/reads", nil, 1, 20*time.Millisecond).Wait(30 * time.Second)
	if len(reader) != 1 || reader[0].Status != http.StatusRequestTimeout || !strings.Contains(reader[0].Body, `"code":"request_timeout"`) {
		t.Errorf("body dripped to a reading handler: %v, want 408 request_timeout", reader)
	}
	// This handler answers at once; net/http then drains what is left of
	// the body under the same deadline.
	ignorer := testenv.Drip(t, addr, "POST", "/ignores", nil, 1, 20*time.Millisecond).Wait(30 * time.Second)
	if len(ignorer) != 1 {
		t.Errorf("body dripped to a handler that ignores it: connection still open after 30s, want it cut at %v", bodyTimeout)
	}
	t.Logf("reading handler: %v; ignoring handler: %v", reader, ignorer)
}

// TestBodyDeadlineNeverCutsTheHandlersWork: a handler that works well past
// the body deadline, after reading its body or on a request without one,
// keeps its context and its answer reaches the client.
func TestBodyDeadlineNeverCutsTheHandlersWork(t *testing.T) {
	const bodyTimeout = 100 * time.Millisecond
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ferr := fn.ReadBody(w, r, 4096)
		if ferr != nil {
			fn.WriteError(w, ferr)
			return
		}
		select {
		case <-time.After(5 * bodyTimeout):
			_, _ = w.Write(append([]byte("done "), body...))
		case <-r.Context().Done():
			t.Errorf("%s: the handler's context ended while it worked: %v", r.Method, r.Context().Err())
		}
	}), bodyTimeout)
	for _, tc := range []struct{ method, body string }{{"POST", "payload"}, {"GET", ""}} {
		req, _ := http.NewRequest(tc.method, srv.URL, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.method, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != "done "+tc.body {
			t.Errorf("%s: %d %q, want 200 %q", tc.method, resp.StatusCode, got, "done "+tc.body)
		}
	}
}
