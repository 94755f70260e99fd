package fn

import (
	"bytes"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// JSONErrorListener wraps ln so that the answers net/http writes by itself,
// before any handler runs (400 for a malformed request, 431 for headers
// over MaxHeaderBytes, 501 for an unknown transfer encoding), go out in the
// JSON error shape like every other error answer. net/http writes each of
// them with one call straight to the connection, in a fixed form no
// handler's answer has (Content-Type before Connection, no Date), which is
// what is recognised and rewritten here.
func JSONErrorListener(ln net.Listener) net.Listener { return jsonErrorListener{ln} }

type jsonErrorListener struct{ net.Listener }

func (l jsonErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &jsonErrorConn{Conn: c}, nil
}

type jsonErrorConn struct {
	net.Conn
}

// serverErrorHeaders are the headers of net/http's own error answers.
const serverErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

var serverErrorLine = regexp.MustCompile(`^HTTP/1\.1 ([1-5][0-9][0-9]) ([^\r\n]*)$`)

func (c *jsonErrorConn) Write(p []byte) (int, error) {
	if !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) {
		return c.Conn.Write(p)
	}
	statusLine, _, ok := strings.Cut(string(p), serverErrorHeaders)
	m := serverErrorLine.FindStringSubmatch(statusLine)
	if !ok || m == nil {
		return c.Conn.Write(p)
	}
	status, _ := strconv.Atoi(m[1])
	if _, err := c.Conn.Write(ServerErrorAnswer(status, m[2])); err != nil {
		return 0, err
	}
	return len(p), nil
}

// ServerErrorAnswer is a whole HTTP/1.1 answer, closing the connection, in
// the JSON error shape, for status with net/http's reason text.
func ServerErrorAnswer(status int, reason string) []byte {
	code := map[int]string{
		http.StatusBadRequest:                  "bad_request",
		http.StatusRequestHeaderFieldsTooLarge: "headers_too_large",
		http.StatusNotImplemented:              "not_implemented",
	}[status]
	if code == "" {
		code = "bad_request"
	}
	text := http.StatusText(status)
	message := strings.TrimPrefix(strings.TrimPrefix(reason, text), ": ")
	if message == "" {
		message = strings.ToLower(text)
	}
	body := ErrorResponse(Errorf(status, code, "%s", message)).Body
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + text + "\r\n")
	b.WriteString("Content-Type: application/json\r\nConnection: close\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	b.Write(body)
	return b.Bytes()
}

// CloseWrite keeps net/http's half-close before it drops a connection
// after an error answer, so the client reads the answer and not a reset.
func (c *jsonErrorConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
