package fn

import (
	"net/http"
)

// ServeHTTP serves the handler for of-watchdog's http mode and the local
// host. The whole body is read (under the server's body deadline, see
// NewServer) before the call takes a concurrency slot.
func (a *Adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, ferr := ReadBody(w, r, a.maxBody())
	if ferr != nil {
		WriteError(w, ferr)
		return
	}
	req := Request{
		Body:        body,
		Header:      r.Header,
		QueryString: r.URL.RawQuery,
		Method:      r.Method,
		Host:        r.Host,
	}
	req.WithContext(r.Context())
	WriteResponse(w, a.limited(req))
}

// WriteResponse writes resp to w.
func WriteResponse(w http.ResponseWriter, resp Response) {
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(resp.Body)
}

// WriteError writes e in the public error shape.
func WriteError(w http.ResponseWriter, e *Error) { WriteResponse(w, ErrorResponse(e)) }

// WriteJSON writes v as a JSON answer with status. A value that cannot be
// encoded is a bug, answered 500 in the error shape.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	resp, err := JSON(status, v)
	if err != nil {
		WriteError(w, Internal())
		return
	}
	WriteResponse(w, resp)
}
