package fn

import (
	"errors"
	"io"
	"net/http"
)

// ServeHTTP serves the handler for of-watchdog's http mode and the local host.
func (a *Adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.maxBody()))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			WriteResponse(w, ErrorResponse(TooLarge(a.maxBody())))
			return
		}
		WriteResponse(w, ErrorResponse(BadRequest("reading request body: %v", err)))
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
	WriteResponse(w, a.invoke(req))
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
