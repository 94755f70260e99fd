package testenv

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// DripBodyBytes is the body size a dripper announces: more than it ever
// sends, and more than net/http drains after a handler gives up on a body.
const DripBodyBytes = 1 << 20

// Drippers are connections that each send one request whose body comes a
// byte at a time, the way a slow or hostile client holds a server's
// connections (and, on a server that takes a slot before reading, its
// slots). Each connection drips until the server answers or closes it.
type Drippers struct {
	outcomes chan DripOutcome
	n        int
}

// DripOutcome is how one dripping connection ended.
type DripOutcome struct {
	Status int    // the server's answer; 0 when it closed without one
	Body   string // the answer's body
	Err    error  // why no answer could be read, when Status is 0
	After  time.Duration
}

func (o DripOutcome) String() string {
	if o.Status == 0 {
		return fmt.Sprintf("closed without an answer after %v (%v)", o.After.Round(time.Millisecond), o.Err)
	}
	return fmt.Sprintf("%d %s after %v", o.Status, strings.TrimSpace(o.Body), o.After.Round(time.Millisecond))
}

// Drip opens n connections to addr (host:port), each sending method path
// with header, a Content-Length of DripBodyBytes and then one body byte
// every interval. It returns once every connection has sent its headers
// and first body byte. The connections are closed when t ends.
func Drip(t testing.TB, addr, method, path string, header http.Header, n int, interval time.Duration) *Drippers {
	t.Helper()
	d := &Drippers{outcomes: make(chan DripOutcome, n), n: n}
	var head strings.Builder
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", method, path, addr, DripBodyBytes)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&head, "%s: %s\r\n", k, v)
		}
	}
	head.WriteString("\r\n{")
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dripper %d: dial %s: %v", i, addr, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, head.String()); err != nil {
			t.Fatalf("dripper %d: send headers: %v", i, err)
		}
		start := time.Now()
		stop := make(chan struct{})
		go d.drip(c, interval, stop)
		go d.await(c, start, stop)
	}
	return d
}

// drip sends a body byte every interval until stop, a failed write, or
// the announced length.
func (d *Drippers) drip(c net.Conn, interval time.Duration, stop chan struct{}) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for sent := 1; sent < DripBodyBytes; sent++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte(" ")); err != nil {
			return
		}
	}
}

// await reads the server's answer, if any, and ends the connection.
func (d *Drippers) await(c net.Conn, start time.Time, stop chan struct{}) {
	defer close(stop)
	defer c.Close()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	o := DripOutcome{Err: err}
	if err == nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		o.Status, o.Body = resp.StatusCode, string(body)
	}
	o.After = time.Since(start)
	d.outcomes <- o
}

// Wait returns how the connections ended, waiting at most max for all of
// them; fewer than n outcomes means the rest were still held open.
func (d *Drippers) Wait(max time.Duration) []DripOutcome {
	var out []DripOutcome
	timeout := time.After(max)
	for len(out) < d.n {
		select {
		case o := <-d.outcomes:
			out = append(out, o)
		case <-timeout:
			return out
		}
	}
	return out
}

// ExpectCut waits up to 30s for every connection to end, and fails t
// unless each was cut at the server's body deadline (named in the
// messages): answered 408 request_timeout in the JSON error shape, or
// closed without an answer.
func (d *Drippers) ExpectCut(t testing.TB, deadline time.Duration) {
	t.Helper()
	outcomes := d.Wait(30 * time.Second)
	for i, o := range outcomes {
		t.Logf("dripper %d: %s", i, o)
		if o.Status != 0 && (o.Status != http.StatusRequestTimeout || !strings.Contains(o.Body, `"code":"request_timeout"`)) {
			t.Errorf("dripper %d: %s, want 408 request_timeout in the JSON error shape", i, o)
		}
	}
	if len(outcomes) != d.n {
		t.Fatalf("%d of %d dripping connections still open after 30s; the body deadline is %v", d.n-len(outcomes), d.n, deadline)
	}
}
