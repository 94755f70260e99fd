package fn

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"tidings/lib/config"
)

// NewServer returns the http.Server every tidings server runs h on: the
// function host, a function's own entry point and gateway-ws. It holds
// each client to the read deadlines of s (defaults for zero fields): the
// headers within ReadHeaderTimeout, the body within ReadBodyTimeout of the
// headers (ReadBody then answers 408), and an idle keep-alive connection
// is closed after IdleTimeout. A slow client so holds a connection for a
// bounded time, and since a function takes its concurrency slot only once
// its body is read (Adapter), never a slot. log may be nil.
func NewServer(h http.Handler, s config.HTTPServer, log *slog.Logger) *http.Server {
	s = s.WithDefaults()
	srv := &http.Server{
		Handler:           BodyDeadline(h, s.ReadBodyTimeout),
		ReadHeaderTimeout: s.ReadHeaderTimeout,
		IdleTimeout:       s.IdleTimeout,
	}
	if log != nil {
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	}
	return srv
}

// BodyDeadline gives every request that has a body timeout to send it,
// counted from the end of its headers. net/http lifts the deadline itself
// once the body has been read to its end, so it never cuts a handler's own
// work short; a body left unread is drained after the handler under the
// same deadline. Requests without a body get none: net/http already waits
// on their connection, and a deadline there would cancel the handler's
// context. (http.Server's ReadTimeout is not used for the same reason.)
func BodyDeadline(next http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			// An error means a writer without deadlines (a test recorder).
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
		}
		next.ServeHTTP(w, r)
	})
}

// RequestTimeout is the answer to a body not sent within the server's body
// deadline.
func RequestTimeout() *Error {
	return &Error{Status: http.StatusRequestTimeout, Code: "request_timeout", Message: "request body not received in time"}
}

// ReadBody reads r's body, at most limit bytes. A body over the limit is a
// 413, one not sent in time (BodyDeadline) a 408, any other failure to read
// it a 400: each the client's doing, none the function's.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *Error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		return body, nil
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, TooLarge(limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, RequestTimeout()
	default:
		return nil, BadRequest("reading request body: %v", err)
	}
}
