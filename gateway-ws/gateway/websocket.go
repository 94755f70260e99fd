package gateway

import (
	"bufio"
	"errors"
	"net"
	"time"

	"github.com/gorilla/websocket"
)

// wsTransport is a conn over a WebSocket: serve is its reader goroutine,
// and a writer goroutine (writeQueued) runs only while frames are queued.
type wsTransport struct {
	c  *conn
	ws *websocket.Conn
	// br is ws's read buffer, which the reader waits in (reader.go); nil
	// if the socket was not upgraded through a hijackTap.
	br *bufio.Reader
}

// flush starts a writer for the frames just queued.
func (t *wsTransport) flush() { go t.writeQueued() }

// writeQueued writes frames until the queue is empty, then exits.
func (t *wsTransport) writeQueued() {
	c := t.c
	for {
		frame, ok := c.next()
		if !ok {
			return
		}
		_ = t.ws.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		if err := t.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
			c.kill(websocket.CloseAbnormalClosure, "write failed")
			continue
		}
		c.srv.metrics.MessagesOut.Inc()
	}
}

// shut says why in a close frame, then gives the client closeGrace to
// answer with its own before the reader gives up.
func (t *wsTransport) shut() {
	c := t.c
	if c.closeCode == websocket.CloseAbnormalClosure {
		_ = t.ws.NetConn().Close()
		return
	}
	msg := websocket.FormatCloseMessage(c.closeCode, c.closeReason)
	if err := t.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace)); err != nil {
		_ = t.ws.NetConn().Close()
		return
	}
	_ = t.ws.NetConn().SetReadDeadline(time.Now().Add(closeGrace))
}

func (t *wsTransport) release() { _ = t.ws.NetConn().Close() }

// serve reads the socket until it closes, then tears the conn down; it
// only waits for frames, which are read and handled off it (reader.go).
func (t *wsTransport) serve() {
	c := t.c
	defer c.teardown()
	defer c.recoverPanic()
	defer c.armExpiry()()
	t.ws.SetReadLimit(c.srv.cfg.MaxFrameBytes)
	// WebSocket pings count as activity too, as they do for Cowboy's idle
	// timeout under Phoenix.
	t.ws.SetPingHandler(func(data string) error {
		if !c.killed() {
			_ = t.ws.SetReadDeadline(time.Now().Add(c.srv.cfg.IdleTimeout))
		}
		err := t.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(closeGrace))
		var ne net.Error
		if errors.Is(err, websocket.ErrCloseSent) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil // the connection is closing or the pong is late: not a read error
		}
		return err
	})
	for {
		deadline := time.Now().Add(c.srv.cfg.IdleTimeout)
		if c.killed() {
			deadline = time.Now().Add(closeGrace)
		}
		_ = t.ws.SetReadDeadline(deadline)
		if err := t.awaitFrame(); err != nil {
			t.readFailed(err)
			return
		}
		if !t.offReader() {
			return
		}
	}
}

func (t *wsTransport) readFailed(err error) {
	c := t.c
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		c.kill(websocket.CloseNormalClosure, "")
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has already sent 1009 (message too big).
		c.kill(websocket.CloseMessageTooBig, "frame too large")
	case errors.As(err, &ne) && ne.Timeout() && !c.killed():
		c.kill(websocket.CloseNormalClosure, "idle timeout")
	default:
		c.kill(websocket.CloseAbnormalClosure, "")
	}
}
