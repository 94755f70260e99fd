package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"

	"github.com/gorilla/websocket"
)

// An idle socket costs what its reader goroutine keeps while it waits for
// the client, for hours: its stack above all. A goroutine's stack grows to
// its deepest call and stays that size while it is parked (the runtime
// halves a stack only when under a quarter of it is in use, which a
// parked read never is below 8 KiB), so a reader that read frames with
// gorilla and handled them itself kept the 8 KiB that a join's
// authorisation, JSON and Redis calls grew, long after the join.
//
// So the reader goroutine only waits: awaitFrame parks it, a few calls
// deep, until the client has sent a byte. Reading the frame with gorilla,
// decoding and handling it (nextFrame) then run on a goroutine of its own
// (offReader) while the reader waits for that to end. Frames are still
// handled one at a time and in the order they came, as a Phoenix socket
// process handles its messages, so what the handling keeps per socket
// (channels, the rate limit) is touched by one goroutine at a time; the
// deep stack goes with the short goroutine, and the parked reader stays
// within the runtime's smallest stack, 2 KiB.

// readBufferSize is each socket's read buffer: a Phoenix frame (a
// heartbeat, a join, a short publish) fits in one read, and larger frames
// still work, read in several. gorilla reuses the hijacked reader (see
// hijackTap) only when it is over 256 bytes.
const readBufferSize = 512

// awaitFrame returns once the client has sent something (or the read
// deadline passed, or the connection failed), on the reader's own
// shallow stack: it waits in the socket's read buffer, which gorilla
// reads the frame from next.
func (t *wsTransport) awaitFrame() error {
	if t.br == nil {
		return nil // nothing to wait in: the frame is awaited off the reader
	}
	_, err := t.br.Peek(1)
	return err
}

// offReader reads and handles the next frame (nextFrame) on a short-lived
// goroutine and returns once that is done: false once the socket can be
// read no more. A panic there closes the socket, as one in the reader
// does.
func (t *wsTransport) offReader() bool {
	var more bool
	handled := make(chan struct{})
	go func() {
		defer close(handled)
		defer t.c.recoverPanic()
		more = t.nextFrame()
	}()
	<-handled
	return more
}

// nextFrame reads the client's next message and hands it to the conn; it
// reports false once the socket can be read no more.
func (t *wsTransport) nextFrame() bool {
	typ, data, err := t.ws.ReadMessage()
	if err != nil {
		t.readFailed(err)
		return false
	}
	t.c.receive(data, typ == websocket.BinaryMessage)
	return true
}

// recoverPanic, deferred by the socket's goroutines, turns a panic into a
// closed socket (1011): these goroutines are the gateway's own, not
// net/http's, and a bug in one must close one socket, not end the process.
func (c *conn) recoverPanic() {
	if r := recover(); r != nil {
		c.srv.log.Error("connection panicked", "conn", c.id, "user", c.userID, "panic", fmt.Sprint(r))
		c.kill(websocket.CloseInternalServerErr, "internal error")
	}
}

// hijackTap hands gorilla's upgrade a read buffer of the gateway's own,
// which gorilla then reads frames from (the upgrader's ReadBufferSize is
// 0, so gorilla reuses the hijacked reader): the reader goroutine waits in
// it (awaitFrame), which it could not do in a buffer private to gorilla
// without missing frames already buffered.
type hijackTap struct {
	http.ResponseWriter
	br *bufio.Reader // set by Hijack
}

func (t *hijackTap) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(t.ResponseWriter).Hijack()
	if err != nil || brw.Reader.Buffered() > 0 {
		return nc, brw, err // gorilla refuses a client that did not wait for the handshake
	}
	t.br = bufio.NewReaderSize(nc, readBufferSize)
	return nc, bufio.NewReadWriter(t.br, brw.Writer), nil
}
